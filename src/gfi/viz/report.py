"""``report.html``: one self-contained page to look at a run's results.

A row per image and target: the input, the stage-1 map (when the method has one), the class map
over the image, the target's class and score, and the model's top classes. Images are small JPEG
thumbnails embedded as ``data:`` URLs; the page loads nothing from anywhere (its
Content-Security-Policy forbids it), so it works offline and can be mailed as one file. Click a
column header to sort by it (again to reverse). Every name that comes from the user (file names,
class names, error messages) is HTML-escaped, after :func:`gfi.data.names.printable` has escaped
its control characters and the bytes of a file name that are not UTF-8 (``bad\xff.png``), so the
page is always valid UTF-8.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from html import escape as _html
from pathlib import Path
from urllib.parse import quote

import numpy as np
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

THUMB_SIDE = 160


def escape(text: object) -> str:
    """``text`` shown in HTML: printable (:func:`gfi.data.names.printable`), then HTML-escaped."""
    from gfi.data.names import printable

    return _html(printable(text))


def thumbnail(image: Tensor, saliency: Tensor | None = None, *, cmap: str = "jet", side: int = THUMB_SIDE,
              quality: int = 80) -> bytes:
    """JPEG bytes of ``image`` (C, H, W) in [0, 1] (shown as :func:`gfi.viz.overlay.display_rgb` shows
    it), long side ``side`` px, with ``saliency`` (H, W) blended on it when given (the colour map of
    :func:`gfi.viz.overlay.overlay`)."""
    from PIL import Image

    from gfi.viz.overlay import display_rgb, overlay

    image = display_rgb(image)

    h, w = image.shape[-2:]
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.interpolate(image[None].float().cpu(), size=size, mode="bilinear", antialias=True,
                          align_corners=False)[0].clamp(0, 1)
    pic = small.permute(1, 2, 0).numpy()
    if saliency is not None:
        sal = F.interpolate(saliency[None, None].float().cpu(), size=size, mode="bilinear", antialias=True,
                            align_corners=False)[0, 0].clamp(0, 1)
        pic = overlay(pic, sal.numpy(), cmap)
    buf = io.BytesIO()
    Image.fromarray((pic * 255).round().astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


#: characters after which a file name may wrap onto the next line in the report
SEPARATORS = "_-./\\ "


def breakable(text: object) -> str:
    """``text`` as :func:`escape` shows it, with a line-break opportunity (``<wbr>``) after each
    separator (``_ - . / \\`` and space), so a long file name wraps between its words; only a run
    longer than its column between separators is cut inside (CSS ``overflow-wrap: break-word``)."""
    shown = escape(text)
    return re.sub(r"([_\-./\\ ])(?=.)", r"\1<wbr>", shown)


def _img(root: Path, name: str | None, alt: str) -> str:
    if not name:
        return '<span class="none">-</span>'
    p = root / name
    try:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
    except OSError as exc:
        log.warning("report: cannot read %s (%s); the cell is left empty", p, exc)
        return '<span class="none">missing</span>'
    return f'<img src="data:image/jpeg;base64,{data}" alt="{escape(alt)}" decoding="async">'


def format_prob(p: float | None) -> str:
    """A probability with three significant digits: 0.43, 0.001, 5.1e-05 (never 0.000); the one
    rule of the terminal, the overlay titles and the report."""
    if p is None:
        return "nan"
    return f"{p:.3g}" if p == 0 or abs(p) >= 1e-3 else f"{p:.2g}"


def _num(v) -> tuple[str, str]:
    """(sort key, text) of a number that may be missing."""
    if v is None:
        return "", "-"
    return repr(float(v)), format_prob(float(v))


STYLE = """
body{font:14px system-ui,sans-serif;margin:1em;color:#222}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top}
th{background:#eee;cursor:pointer;user-select:none;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:13px}dt{font-weight:600}dd{margin:0}
td.n{text-align:right;font-variant-numeric:tabular-nums}img{display:block;max-width:160px}
.none{color:#999}.warn{color:#b00}tr.fails td{background:#fdecea}.sub{color:#666;font-size:85%}
ol{margin:0;padding-left:1.4em}.name{max-width:16em;overflow-wrap:break-word}
"""

SCRIPT = """
(function(){
  function key(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent;
    var n=parseFloat(v);return (v!==''&&!isNaN(n)&&isFinite(v))?[0,n]:[1,v.toLowerCase()];}
  function cmp(a,b){if(a[0]!==b[0])return a[0]-b[0];return a[1]<b[1]?-1:a[1]>b[1]?1:0;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var ths=table.tHead.rows[0].cells;
    Array.prototype.forEach.call(ths,function(th,col){
      if(th.classList.contains('nosort'))return;
      th.addEventListener('click',function(){
        var asc=th.getAttribute('aria-sort')!=='ascending';
        Array.prototype.forEach.call(ths,function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(r1,r2){var c=cmp(key(r1.cells[col]),key(r2.cells[col]));return asc?c:-c;});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
})();
"""


LEGEND = ('<dl id="legend"><dt>p(target)</dt><dd>the model\'s score f<sub>c</sub> of the class on the image '
          '(softmax probability; sigmoid for a multi-label model)</dd><dt>s/image</dt><dd>seconds the method took '
          'per image. Images explained together in one batch (--batch-size) cannot be timed apart: they show '
          'the batch\'s time divided by its images, marked with the batch size</dd></dl>')
LEGEND_KEPT = LEGEND.replace("</dl>", (
    '<dt>p kept</dt><dd>the score of the image with only the map\'s region kept and the rest blurred '
    '(&Phi;(x, m), Eq. 2): high when the map holds the evidence</dd>'
    '<dt>p removed</dt><dd>the score with the map\'s region blurred away (&Phi;<sub>bg</sub>, Eq. 4): low when '
    'the map holds all of it</dd></dl>'))
LEGEND_EVIDENCE = LEGEND.replace("</dl>", (
    '<dt>p kept</dt><dd>the score of the image with only the half the map ranks higher kept (its pixels above '
    'the map\'s median) and the rest blurred (&Phi;(x, u), Eq. 2)</dd>'
    '<dt>p removed</dt><dd>the score with that half blurred away (&Phi;<sub>bg</sub>, Eq. 4)</dd>'
    '<dt>evidence</dt><dd>whether the map holds its class\'s evidence: it is not flat and p kept &ge; p removed. '
    'The check blurs with the same Gaussian (kernel 81, sigma 20) for every method, so two methods\' rows '
    'compare; a map that fails is marked in red, with what to try in the run\'s log</dd></dl>'))


def evidence_flag(ev: dict) -> str:
    """The row's note for a map that fails the evidence check (:mod:`gfi.evidence`)."""
    if ev.get("problem") == "empty":
        return "the map is flat: it marks no region and holds none of the class's evidence"
    if ev.get("problem") == "kept_below_removed":
        return (f"does not hold the class's evidence: p kept {format_prob(ev.get('prob_kept'))} < p removed "
                f"{format_prob(ev.get('prob_removed'))}")
    return "the evidence check's scores are not finite"


def _evidence_cell(ev: dict | None) -> str:
    """The evidence column: "holds" or "fails" (sorting puts the failing maps first)."""
    if ev is None:
        return '<td data-v="">-</td>'
    if ev.get("holds"):
        return '<td data-v="1">holds</td>'
    return '<td class="warn" data-v="0">fails</td>'


def render_report(summary: dict, root: Path, title: str = "gfi explain") -> str:
    """The page's HTML for a ``results.json`` summary whose files lie under ``root``."""
    records = summary.get("images", [])
    failures = summary.get("failures", [])
    has_stage1 = any(r.get("thumb_stage1") for r in records)
    targets = [t for r in records for t in r.get("targets", [])]
    has_evidence = any("evidence" in t for t in targets)
    has_kept = has_evidence or any("prob_kept" in t for t in targets)
    head = ["#", "image", "input"] + (["stage-1 map"] if has_stage1 else []) + [
        "class map", "target class", "p(target)"] + (["p kept", "p removed"] if has_kept else []) + (
        ["evidence"] if has_evidence else []) + ["top classes", "s/image"]
    nosort = {"input", "stage-1 map", "class map", "top classes"}
    rows = []
    n = 0
    for i, rec in enumerate(records):
        name = Path(rec["image"]).name
        for t in rec.get("targets", []):
            n += 1
            cls = f'{t["class_name"]} ({t["class"]})' if t.get("class") is not None else t.get("target", "")
            if t.get("class") is not None and t.get("target"):
                cls += f', {t["target"]}'
            flags = []
            ev = t.get("evidence")
            if t.get("collapsed"):
                flags.append("map collapsed (all weights zero): shown as zeros")
            if ev and not ev.get("holds") and not t.get("collapsed"):
                flags.append(evidence_flag(ev))
            if t.get("nonfinite"):
                flags.append("non-finite scores")
            note = "".join(f'<div class="warn">{escape(f)}</div>' for f in flags)
            top = "".join(f'<li>{escape(c["class_name"])} ({c["class"]}): {_num(c["prob"])[1]}</li>'
                          for c in rec.get("top5", [])[:3])
            cells = [
                f'<td class="n" data-v="{i}">{i + 1}</td>',
                f'<td class="name" data-v="{escape(name)}" title="{escape(rec["image"])}">{breakable(name)}</td>',
                f'<td>{_img(root, rec.get("thumb_input"), "input " + name)}</td>',
            ]
            if has_stage1:
                cells.append(f'<td>{_img(root, rec.get("thumb_stage1"), "stage-1 map " + name)}</td>')
            thumb = _img(root, t.get("thumb"), "class map " + name)
            if t.get("overlay"):  # the thumbnail opens the full-size overlay
                thumb = f'<a href="{escape(quote(t["overlay"]))}" title="open the full-size overlay">{thumb}</a>'
            cells.append(f'<td>{thumb}{note}</td>')
            cells.append(f'<td data-v="{escape(cls.lower())}">{escape(cls)}</td>')
            kept = ev if ev is not None else t  # the check's scores; GFI's own in a run made before the check
            values = [t.get("prob")] + ([kept.get("prob_kept"), kept.get("prob_removed")] if has_kept else [])
            for v in values:
                k, text = _num(v)
                cells.append(f'<td class="n" data-v="{k}">{text}</td>')
            if has_evidence:
                cells.append(_evidence_cell(ev))
            k, text = _num(rec.get("seconds_per_image"))
            batch = int(rec.get("batch_images") or 1)
            if batch > 1:
                text += f'<div class="sub">mean of a batch of {batch}</div>'
            cells.append(f'<td class="n seconds" data-v="{k}">{text}</td>')
            cells.insert(-1, f"<td><ol>{top}</ol></td>")
            fails = ev is not None and not ev.get("holds")
            rows.append(('<tr class="fails">' if fails else "<tr>") + "".join(cells) + "</tr>")
    ths = "".join(f'<th{" class=nosort" if h in nosort else ""} scope="col">{escape(h)}</th>' for h in head)
    fail_html = ""
    if failures:
        frows = "".join(f'<tr><td class="name">{breakable(f["image"])}</td><td>{escape(f["error"])}</td></tr>'
                        for f in failures)
        fail_html = (f'<h2>Not explained ({len(failures)})</h2><table id="failures" class="sortable"><thead><tr>'
                     f'<th scope="col">image</th><th scope="col">error</th></tr></thead><tbody>{frows}</tbody></table>')
    model = summary.get("model") or {}
    plural = lambda k, word: f"{k} {word}" + ("" if k == 1 else "s")  # noqa: E731
    failing = sum(1 for t in targets if "evidence" in t and not t["evidence"].get("holds"))
    meta = (f'{escape(str(model.get("model", "")))} · method {escape(str(summary.get("method", "")))} · '
            f'{plural(len(records), "image")}, {plural(n, "map")}'
            + (f' · <span class="warn">{escape(plural(failing, "map") + " without the class" + chr(39) + "s evidence")}'
               '</span>' if failing else "")
            + ("" if summary.get("complete", True) else " · INCOMPLETE run"))
    legend = LEGEND_EVIDENCE if has_evidence else LEGEND_KEPT if has_kept else LEGEND
    csp = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f'<meta name="viewport" content="width=device-width"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1><p>{meta}. "
        f'Click a column header to sort; click a class map to open its full-size overlay.</p>{legend}'

        f'<table id="results" class="sortable"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f"{fail_html}<script>{SCRIPT}</script></body></html>\n"
    )


def write_report(path: Path, summary: dict, root: Path, title: str = "gfi explain") -> None:
    """Write :func:`render_report` to ``path`` atomically."""
    from gfi.runs import atomic_write_text

    atomic_write_text(Path(path), render_report(summary, root, title))


__all__ = ["breakable", "evidence_flag", "format_prob", "render_report", "thumbnail", "write_report"]
