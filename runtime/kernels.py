"""Array-API helpers that generated modules carry inline (copied from here, tested here).

Each takes the namespace `xp` first. Generated code copies the source of the ones
it uses, so a module never imports nnc.
"""


def _softmax(xp, x, axis):
    if x.shape[axis] == 0:  # an empty batch along the axis: nothing to normalise, no max to take
        return x + 0.0  # a new array: x may be the caller's input, and the result is handed out
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def _log_softmax(xp, x, axis):
    if x.shape[axis] == 0:  # an empty batch along the axis: nothing to normalise, no max to take
        return x + 0.0  # a new array: x may be the caller's input, and the result is handed out
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def _onehot(xp, labels, classes, like):
    # class indices in the labels' own integer dtype: no promotion (uint64 and int64 have none),
    # unless that dtype cannot count to the last class (int8 labels, 257 classes: the arange
    # would wrap; every integer dtype counts to 127)
    if classes > 128 and xp.iinfo(labels.dtype).max < classes - 1:
        labels = xp.astype(labels, xp.int32)
    # (values traced by jax.jit have no device: placement is then the compiler's)
    hits = labels[..., None] == xp.arange(classes, dtype=labels.dtype, device=getattr(like, "device", None))
    return xp.astype(hits, like.dtype)


def _copy(xp, a):
    """A copy of `a`, a result that is (or views) an array the caller holds or another result.
    A PyTorch tensor that requires grad is cloned, which keeps it in the graph:
    xp.asarray(a, copy=True) does too, but warns since PyTorch 2.13 (array_api_compat passes no
    requires_grad to torch.asarray, whose default changed)."""
    if getattr(a, "requires_grad", False):
        return a.clone()
    return xp.asarray(a, copy=True)
