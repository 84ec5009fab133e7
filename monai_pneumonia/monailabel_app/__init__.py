"""MONAI Label app serving the bundle's pneumonia classifier (see ``docs/monailabel.md``).

This folder is what ``monailabel start_server --app monai_pneumonia/monailabel_app`` loads: ``main.py`` holds the
:class:`~monailabel.interfaces.app.MONAILabelApp` subclass, :mod:`.infer_task` the infer task built from the
bundle's own inference components. Importing this package does not import MONAI Label (it lives in the separate
``.venv-monailabel/`` environment); only ``main.py`` and :mod:`.infer_task` do.
"""
