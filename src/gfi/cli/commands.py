"""The commands' names and their one line each in ``gfi --help``: the one list that the full parser
and the light parser of a command line without a command (:func:`gfi.cli.top_level_parser`, which
imports no torch) share."""

#: each command's one line in ``gfi --help``, in its order (the commands' parsers use the same lines)
COMMAND_HELP = {
    "explain": "explain images; writes overlays, .npy maps, results.json and report.html",
    "models": "list model presets and whether their weights are available offline",
    "methods": "list explanation methods",
    "layers": "list a model's layers with module types and output shapes (for --inversion-layer / --channel-layer)",
    "classes": "list class indices and names (those containing PATTERN), for --target",
    "compare": "one figure comparing methods (Fig. 2), classes (Fig. 3) or models (Fig. 5)",
    "eval": "run an evaluation (localization, pointing, saliency, ...) over a dataset",
}
