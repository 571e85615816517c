"""Host-side parameter initializers (NumPy Generator); generated modules carry copies."""

import math


def _glorot_uniform(rng, shape):
    fan_in, fan_out = (shape[0], shape[-1]) if len(shape) > 1 else (shape[0], shape[0])
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def _he_normal(rng, shape):
    return rng.normal(0.0, math.sqrt(2.0 / shape[0]), size=shape)
