"""Reading a Keras model's layers and tapping one of them, without changing the model.

A *tap model* is a new Keras model, built from the user's model's own layers (shared, so it sees
the same weights), whose outputs are ``[activations of the chosen layer, score source, probs]``.
It is built by re-running the model's functional graph on a fresh input and calling every layer
as the original does, except that the call of the chosen layer (or of the nested sub-model that
holds it, itself tapped the same way, recursively) also yields that layer's output. This is what
avoids Keras's "Graph disconnected" error on nested models: ``backbone.get_layer(name).output``
lives in the backbone's own graph, but the tapped backbone's output lives in the outer one.

Nothing here imports TensorFlow at module import time.
"""
from __future__ import annotations

from typing import Any

MOBILENETV2_LAYERS = ("block_16_depthwise", "out_relu")
"""Named defaults for MobileNetV2: the published Grad-CAM layer (a depthwise convolution before
its batch norm and ReLU6, so its activations are signed: on real films mostly negative), and the
backbone's last ReLU6 (non-negative), the default of every method that needs non-negative
activations."""

# What a CAM method needs of the explained layer's activations (``CAM.activations``), and what a
# layer gives (:func:`layer_activations`).
ANY = "any"
NON_NEGATIVE = "non_negative"

# Activation functions whose output is never negative.
_NON_NEGATIVE_FUNCTIONS = {"relu", "relu6", "sigmoid", "hard_sigmoid", "softplus", "softmax",
                           "exponential"}

# The score that a CAM differentiates, see :func:`score_kind`.
SCORE_DENSE_LOGIT = "dense_logit"
SCORE_LOGIT = "logit"
SCORE_LOG_PROB = "log_prob"


def _keras():
    from cxrlib.core.tfsetup import tf

    tf()
    import keras  # noqa: PLC0415

    return keras


def _is_model(layer: Any) -> bool:
    return isinstance(layer, _keras().Model)


def _is_conv_like(layer: Any) -> bool:
    layers = _keras().layers
    kinds = (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D, layers.Conv2DTranspose,
             layers.ReLU, layers.Activation, layers.LeakyReLU, layers.ELU, layers.PReLU)
    if not isinstance(layer, kinds):
        return False
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):
        return False


def _walk(model: Any):
    """Yield ``(path, layer)`` for every layer, descending into nested models, in order."""
    for layer in model.layers:
        yield (model,), layer
        if _is_model(layer):
            for path, inner in _walk(layer):
                yield (model, *path), inner


def conv_layer_names(model: Any) -> list[str]:
    """Names of the layers a CAM can explain: every convolution or activation layer with a 4-D
    ``(N, h, w, channels)`` output, including those inside nested sub-models, in model order.

    Args:
        model: a Keras model (functional, sequential, or with nested sub-models).

    Returns:
        Layer names, e.g. ``[..., "block_16_depthwise", ..., "out_relu"]`` for MobileNetV2.
    """
    names: list[str] = []
    for _, layer in _walk(model):
        if _is_conv_like(layer) and layer.name not in names:
            names.append(layer.name)
    return names


def activation_sign(layer: Any) -> str:
    """:data:`NON_NEGATIVE` when a layer's output can never be negative, else :data:`ANY`.

    Decided from the layer alone: a ``ReLU`` without a negative slope or a negative threshold,
    an ``Activation`` with a non-negative function (relu, relu6, sigmoid, softplus, ...), or a
    convolution with such a built-in activation. A linear convolution (MobileNetV2's
    ``block_16_depthwise``), a leaky ReLU, ELU or PReLU give signed activations.
    """
    layers = _keras().layers
    if isinstance(layer, layers.ReLU):
        slope = float(getattr(layer, "negative_slope", 0.0) or 0.0)
        threshold = float(getattr(layer, "threshold", 0.0) or 0.0)
        return NON_NEGATIVE if slope == 0.0 and threshold >= 0.0 else ANY
    if isinstance(layer, (layers.LeakyReLU, layers.ELU, layers.PReLU)):
        return ANY
    function = getattr(getattr(layer, "activation", None), "__name__", "")
    return NON_NEGATIVE if function in _NON_NEGATIVE_FUNCTIONS else ANY


def layer_activations(model: Any, name: str) -> str:
    """:func:`activation_sign` of the conv-like layer ``name`` of ``model``.

    Raises:
        ValueError: for a name that is not a conv-like layer (lists the valid ones).
    """
    return activation_sign(find_layer(model, name)[1])


def valid_layers(model: Any, activations: str = ANY) -> list[str]:
    """The conv-like layers whose activations a method needing ``activations`` can explain, in
    model order: every one for :data:`ANY`, the non-negative ones for :data:`NON_NEGATIVE`."""
    names = conv_layer_names(model)
    if activations == ANY:
        return names
    if activations != NON_NEGATIVE:
        raise ValueError(f"activations must be {ANY!r} or {NON_NEGATIVE!r}, got {activations!r}")
    return [name for name in names if layer_activations(model, name) == NON_NEGATIVE]


def default_layer(model: Any, activations: str = ANY) -> str:
    """The layer a CAM explains when none is given, valid for what the method needs.

    MobileNetV2: the published ``block_16_depthwise`` for methods that take signed activations
    (:data:`ANY`: Grad-CAM, HiResCAM), ``out_relu`` for those that need non-negative ones
    (:data:`NON_NEGATIVE`). Other models: the last conv-like layer whose activations fit (the
    last conv-like layer when none does; the CAM then reports its maps as flat if they are).

    Args:
        model: a Keras model.
        activations: what the method needs, :data:`ANY` or :data:`NON_NEGATIVE`.

    Raises:
        ValueError: when the model has no conv-like layer with a 4-D output.
    """
    names = conv_layer_names(model)
    if not names:
        raise ValueError(f"model {model.name!r} has no convolutional layer to explain")
    fitting = valid_layers(model, activations)
    preferred = MOBILENETV2_LAYERS[0] if activations == ANY else MOBILENETV2_LAYERS[1]
    if preferred in fitting and MOBILENETV2_LAYERS[0] in names:
        return preferred
    return fitting[-1] if fitting else names[-1]


def find_layer(model: Any, name: str) -> tuple[tuple[Any, ...], Any]:
    """The first conv-like layer called ``name`` and the chain of models holding it.

    Returns:
        ``(path, layer)``: ``path[0]`` is ``model``, ``path[-1]`` the sub-model that owns the layer.

    Raises:
        ValueError: for an unknown name or a layer that is not conv-like; the message lists
            the valid names.
    """
    for path, layer in _walk(model):
        if layer.name == name and _is_conv_like(layer):
            return path, layer
    valid = conv_layer_names(model)
    shown = ", ".join(valid[-12:]) + (f" (and {len(valid) - 12} earlier)" if len(valid) > 12 else "")
    raise ValueError(f"layer {name!r} is not a convolutional layer of model {model.name!r}; "
                     f"valid layers: {shown}")


def output_layer(model: Any) -> Any:
    """The layer whose call produces the model's (first) output."""
    if isinstance(model, _keras().Sequential):
        return model.layers[-1]
    history = getattr(model.outputs[0], "_keras_history", None)
    return history[0] if history else model.layers[-1]


def score_kind(layer: Any) -> str:
    """Which class score a CAM differentiates, decided from the model's output layer.

    Grad-CAM is defined on the pre-softmax class score y^c. Our models output probabilities, and
    a saturated softmax (p_c rounding to 1.0 in float32) makes the probability's gradient vanish
    or lose its y^c term, so: when the output layer is a ``Dense`` with softmax activation the
    logit is recomputed from that layer's input and its own kernel and bias (``dense_logit``);
    when it is a ``Softmax`` or ``Activation("softmax")`` layer its input is the logit
    (``logit``); otherwise (e.g. the binary CNN's ``[s, 1 - s]``) the log-probability
    ``log p_c`` (``log_prob``), whose gradient is the probability's divided by ``p_c``, so the
    same direction, better scaled.
    """
    keras = _keras()
    activation = getattr(layer, "activation", None)
    is_softmax = getattr(activation, "__name__", "") == "softmax"
    if isinstance(layer, keras.layers.Dense) and is_softmax:
        return SCORE_DENSE_LOGIT
    if isinstance(layer, keras.layers.Softmax) or (isinstance(layer, keras.layers.Activation)
                                                   and is_softmax):
        return SCORE_LOGIT
    return SCORE_LOG_PROB


def _run_graph(model: Any, inputs: Any, call_fn) -> Any:
    """Re-run ``model``'s graph on ``inputs``, calling every layer through ``call_fn``."""
    if isinstance(model, _keras().Sequential):
        x = inputs
        for layer in model.layers:
            x = call_fn(layer, x)
        return x
    # The same traversal that keras.models.clone_model(model, clone_function=lambda l: l,
    # call_function=...) performs, without clone_model re-compiling the model (a compiled model
    # with a custom loss would fail to deserialise it).
    return model._run_through_graph(inputs, operation_fn=lambda op: op, call_fn=call_fn)


def _fresh_inputs(model: Any) -> Any:
    keras = _keras()
    return [keras.Input(batch_shape=t.shape, dtype=t.dtype) for t in model.inputs]


def _tap_graph(model: Any, inputs: Any, path: tuple[Any, ...], target: Any,
               head: Any | None, inject: Any = None) -> tuple[Any, Any, Any]:
    """Symbolic ``(activations, head_input, output)`` of ``model`` applied to ``inputs``.

    With ``inject`` (a symbolic tensor shaped like the target's output), the target layer is not
    called: ``inject`` takes the place of its output, so the graph from there on reads it.
    """
    found: dict[str, Any] = {}
    inner = path[1] if len(path) > 1 else None

    def call_fn(layer, *args, **kwargs):
        if layer is target:
            out = layer(*args, **kwargs) if inject is None else inject
            found["act"] = out
            return out
        if layer is inner:
            sub_inputs = args[0] if len(args) == 1 else list(args)
            act, _, out = _tap_graph(layer, sub_inputs, path[1:], target, None, inject)
            found["act"] = act
            return out
        if layer is head:
            found["head_in"] = args[0]
        return layer(*args, **kwargs)

    feed = inputs[0] if isinstance(inputs, list) and len(inputs) == 1 and isinstance(
        model, _keras().Sequential) else inputs
    outputs = _run_graph(model, feed, call_fn)
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    if "act" not in found:
        raise ValueError(f"layer {target.name!r} is not on the path from the input to the output "
                         f"of model {model.name!r}")
    return found["act"], found.get("head_in"), outputs


def build_tap_model(model: Any, layer_name: str) -> tuple[Any, str, Any]:
    """A new model ``inputs -> [activations, score source, probabilities]`` sharing ``model``'s layers.

    Args:
        model: the user's model (never modified: no attribute is set, no weight is written).
        layer_name: a name from :func:`conv_layer_names`.

    Returns:
        ``(tap_model, score_kind, head_layer)``. The score source is the output layer's input
        (``dense_logit`` / ``logit``) or the probabilities again (``log_prob``), see
        :func:`score_kind`.
    """
    keras = _keras()
    path, target = find_layer(model, layer_name)
    head = output_layer(model)
    kind = score_kind(head)
    inputs = _fresh_inputs(model)
    act, head_in, probs = _tap_graph(model, inputs, path, target, head)
    if head_in is None:  # the output layer was not called at the top level
        kind = SCORE_LOG_PROB
    source = probs if kind == SCORE_LOG_PROB else head_in
    tap = keras.Model(inputs[0] if len(inputs) == 1 else inputs, [act, source, probs], name=f"cam_tap_{model.name}_{layer_name}")
    return tap, kind, head


def build_tail_model(model: Any, layer_name: str) -> tuple[Any, str]:
    """A new model ``activations of layer_name -> score source``: the part of ``model`` above
    the layer, sharing its layers (for methods that change activations, e.g. Ablation-CAM).

    Args:
        model: the user's model (never modified).
        layer_name: a name from :func:`conv_layer_names`.

    Returns:
        ``(tail_model, score_kind)``; the score source is what :func:`build_tap_model` returns.

    Raises:
        ValueError: when some path from the input to the output goes around the layer (e.g. a
            residual connection), so its activations alone do not determine the output.
    """
    keras = _keras()
    path, target = find_layer(model, layer_name)
    head = output_layer(model)
    kind = score_kind(head)
    inject = keras.Input(batch_shape=(None, *target.output.shape[1:]), dtype="float32",
                         name=f"{layer_name}_activations")
    _, head_in, probs = _tap_graph(model, _fresh_inputs(model), path, target, head, inject)
    if head_in is None:
        kind = SCORE_LOG_PROB
    source = probs if kind == SCORE_LOG_PROB else head_in
    try:
        tail = keras.Model(inject, source, name=f"cam_tail_{model.name}_{layer_name}")
    except ValueError as exc:  # Keras: "Graph disconnected" (the output also needs the input)
        raise ValueError(f"layer {layer_name!r} of model {model.name!r} is bypassed by another "
                         f"path to the output (e.g. a residual connection): its activations "
                         f"alone do not determine the output; choose a layer every path goes "
                         f"through") from exc
    return tail, kind
