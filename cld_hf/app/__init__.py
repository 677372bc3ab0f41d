"""The application above the library: ``cld-hf run`` and ``cld-hf plot`` (the library never
imports this package).

Modules: :mod:`~cld_hf.app.arguments` (``RunArguments``), :mod:`~cld_hf.app.data` (loading,
label checks, the hold-out, label noise), :mod:`~cld_hf.app.inputs` (which column feeds the
model, transforms and collators for images and texts), :mod:`~cld_hf.app.builtin` (the
built-in datasets and models), :mod:`~cld_hf.app.training`, :mod:`~cld_hf.app.experiment`
(``run_experiment``), :mod:`~cld_hf.app.comparison` (coresets of every method),
:mod:`~cld_hf.app.results`, :mod:`~cld_hf.app.plots`, :mod:`~cld_hf.app.progress` (the console)
and the two subcommands :mod:`~cld_hf.app.cli_run`, :mod:`~cld_hf.app.cli_plot`.
"""
