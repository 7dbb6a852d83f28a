"""Where training runs: the default device, or a mesh of devices with the batch split over them.

Data parallelism stays here, at the edge: the network, the recursion and the
step are the same on one device or many. With a mesh, every minibatch is
split along its batch axis over the mesh's devices and the parameters and
optimizer state are replicated; XLA then sums the partial gradients
``dW = dB^T X`` across devices.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxnn.training._epoch import BATCH_AXIS

__all__ = ["make_mesh", "place"]


def make_mesh(devices, batch_size: int) -> Mesh | None:
    """A one-axis mesh over ``devices``, or None for a single device."""
    devices = list(devices) if isinstance(devices, (list, tuple)) else devices
    if not isinstance(devices, list) or not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise TypeError(f"devices must be a non-empty sequence of jax devices (e.g. jax.devices()), got {devices!r}")
    if len(set(devices)) != len(devices):
        raise ValueError(f"devices must be distinct, got {devices}")
    if len(devices) == 1:
        return None
    if batch_size % len(devices):
        raise ValueError(
            f"batch_size must be a multiple of the number of devices to split each minibatch "
            f"evenly: got batch_size {batch_size} for {len(devices)} devices"
        )
    return Mesh(np.array(devices), (BATCH_AXIS,))


def place(tree, devices, mesh: Mesh | None):
    """``tree`` on ``devices[0]``, or replicated over ``mesh``; unchanged when ``devices`` is None."""
    if devices is None:
        return tree
    return jax.device_put(tree, devices[0] if mesh is None else NamedSharding(mesh, PartitionSpec()))
