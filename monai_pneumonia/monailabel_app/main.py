"""MONAI Label app: serves the monai-pneumonia bundle as the classification model ``pneumonia``.

Start (see ``docs/monailabel.md``)::

    .venv-monailabel/bin/python -m monailabel.main start_server --app monai_pneumonia/monailabel_app \\
        --studies DIR_OR_DICOMWEB_URL --host 127.0.0.1 --port 8000 [--conf bundle DIR] [--conf device cpu]

``--conf bundle`` picks the bundle (default ``$MONAI_PNEUMONIA_BUNDLE``, else the repository's ``bundle/``);
``--conf device`` where the network runs (default: the bundle config's choice); ``--conf site_profile SITE_JSON``
decides by a site's rule (``monai-pneumonia site fit``). A local studies folder may hold
PNG, JPEG and DICOM (``.dcm``) radiographs besides MONAI Label's usual formats; an image id is the full file
name (``a.dcm`` and ``a.jpeg`` are two images).

Only images of the studies datastore, and files uploaded with the request, are classified: any other path given
as an image id gets the answer of an unknown id (404), whether or not it exists, so the server tells nothing
about its file system. Uploads go to a private temporary folder (mode 0700, removed at exit) and each is deleted
once its request is answered, refused or not.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.infer_v2 import InferTask

import monai_pneumonia
from monai_pneumonia.bundle import BUNDLE_ENV, bundle_file, default_bundle_root
from monai_pneumonia.errors import XrayInputError, find_cause
from monai_pneumonia.monailabel_app.infer_task import ModelNotReadyError, PneumoniaInferTask

__all__ = ["MODEL_NAME", "RADIOGRAPH_PATTERNS", "PneumoniaApp", "RadiographDatastore", "http_error"]

logger = logging.getLogger(__name__)

#: The infer task's name: ``POST /infer/pneumonia``.
MODEL_NAME = "pneumonia"
#: File patterns a local studies folder is scanned for, on top of ``MONAI_LABEL_DATASTORE_FILE_EXT``.
RADIOGRAPH_PATTERNS = ("*.png", "*.jpg", "*.jpeg", "*.dcm", "*.dicom", "*.nii", "*.nii.gz")


def http_error(error: BaseException) -> HTTPException | None:
    """The HTTP answer for an inference failure the client can act on (MONAI Label would answer a bare 500).

    Args:
        error: what the inference raised.

    Returns:
        404 for an unknown model, 422 for a refused input (not a usable radiograph), 503 while the bundle has no
        checkpoint; ``None`` for anything else (a server error).
    """
    refused = find_cause(error, XrayInputError)
    if refused is not None:
        return HTTPException(status_code=422, detail=f"input refused: {refused}")
    if isinstance(error, ModelNotReadyError):
        return HTTPException(status_code=503, detail=str(error))
    if isinstance(error, MONAILabelException) and error.error == MONAILabelError.INVALID_INPUT:
        return HTTPException(status_code=404, detail=error.msg)
    return None


def _inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` (links resolved) lies inside ``folder``."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


class RadiographDatastore(LocalDatastore):
    """MONAI Label's local datastore keyed by the full file name: ``a.dcm`` and ``a.jpeg`` are two images.

    ``LocalDatastore`` keys an image by its name without the extension, so files sharing a stem collide (one of
    them is listed, the other is unreachable); a studies folder of radiographs often holds a DICOM and its JPEG.
    """

    def _to_id(self, file: str) -> tuple[str, str]:
        return file, ""


class PneumoniaApp(MONAILabelApp):
    """The app: one infer task, ``pneumonia``, built from the bundle's inference config and checkpoint.

    Args:
        app_dir: this folder (MONAI Label writes ``model/``, ``logs/`` and ``bin/`` into it).
        studies: a local folder of radiographs, or a DICOMweb URL.
        conf: ``--conf`` options: ``bundle`` (a bundle folder), ``device`` (e.g. ``cpu``), ``site_profile``
            (a ``site.json``).

    Raises:
        FileNotFoundError: the bundle folder has no ``configs/inference.json`` (the server does not start).
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        conf = conf or {}
        self.bundle_root = Path(conf["bundle"]).expanduser().resolve() if conf.get("bundle") else default_bundle_root()
        if not bundle_file(self.bundle_root, "inference.json").is_file():
            raise FileNotFoundError(f"{self.bundle_root}: not a bundle (no configs/inference.json); pass --conf bundle "
                                    f"DIR or set ${BUNDLE_ENV}")
        self.device = conf.get("device") or None
        self.site_profile = conf.get("site_profile") or None
        # MONAI Label writes each upload to tempfile's folder (world-readable in /tmp) and deletes it only after
        # a successful answer: a private folder for this process, and infer() deletes each upload itself
        self.upload_dir = Path(tempfile.mkdtemp(prefix="monai-pneumonia-label-"))  # mode 0700
        tempfile.tempdir = os.fspath(self.upload_dir)
        atexit.register(shutil.rmtree, self.upload_dir, ignore_errors=True)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monai-pneumonia",
            description="Pediatric chest radiographs: pneumonia vs normal (attention-ResNet bundle)",
            version=monai_pneumonia.__version__,
        )

    def init_datastore(self) -> Datastore:
        """MONAI Label's datastore; a local folder is also scanned for PNG, JPEG and DICOM radiographs."""
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        extensions = list(dict.fromkeys([*settings.MONAI_LABEL_DATASTORE_FILE_EXT, *RADIOGRAPH_PATTERNS]))
        return RadiographDatastore(
            self.studies,
            extensions=extensions,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def _download_dcmqi_tools(self) -> None:
        """MONAI Label fetches dcmqi from GitHub for a DICOMweb source (DICOM SEG output only); offline, go on."""
        try:
            super()._download_dcmqi_tools()
        except Exception as error:  # no internet access: a classification app never writes DICOM SEG
            logger.warning("dcmqi tools not downloaded (%s); DICOM SEG output is unavailable, inference is not "
                           "affected", error)

    def init_infers(self) -> dict[str, InferTask]:
        """``{"pneumonia": PneumoniaInferTask}``; warns when the bundle has no checkpoint yet."""
        task = PneumoniaInferTask(self.bundle_root, device=self.device, site_profile=self.site_profile)
        if not task.is_valid():
            logger.warning("%s: no model checkpoint yet; '%s' is not listed in /info/ and answers 503 until it is",
                           task.checkpoint, MODEL_NAME)
        return {MODEL_NAME: task}

    def infer(self, request: dict, datastore: Datastore | None = None) -> dict:
        """MONAI Label's inference, with clear HTTP errors for an unknown image id and the cases of :func:`http_error`.

        Raises:
            HTTPException: 404 (unknown image id or model, or a path outside the studies), 422 (input refused),
                503 (no checkpoint yet).
        """
        image = request.get("image")
        try:
            request = {**request, "image": self._resolve_image(image, datastore or self.datastore())}
            return super().infer(request, datastore)
        except Exception as error:
            answer = http_error(error)
            if answer is None:
                raise
            raise answer from error
        finally:
            if isinstance(image, str) and image and _inside(image, self.upload_dir):
                Path(image).unlink(missing_ok=True)  # an upload: used once

    def _resolve_image(self, image: object, datastore: Datastore) -> object:
        """The file of an image id: an upload of this request, or an image of the datastore.

        Raises:
            HTTPException: 404 with the same text for an unknown id and for any path outside the studies (an
                existing file there included).
        """
        if not isinstance(image, str) or not image:
            return image
        if _inside(image, self.upload_dir) and os.path.isfile(image):
            return image
        unknown = HTTPException(status_code=404, detail=f"unknown image id {image!r} (not in the studies datastore)")
        local = isinstance(datastore, LocalDatastore)
        if os.path.isabs(image) or os.sep in image:  # a path, not an id: only inside a local studies folder
            if local and _inside(image, self.studies) and os.path.isfile(image):
                return os.path.realpath(image)
            raise unknown
        try:
            uri = datastore.get_image_uri(image)
        except Exception as error:  # a DICOMweb series that cannot be fetched
            raise unknown from error
        if not uri or not os.path.exists(uri) or (local and not _inside(uri, self.studies)):
            raise unknown
        return uri
