"""Where training runs: the default device, one device, or a mesh with the batch split along one axis.

Data parallelism stays here, at the edge: the network, the recursion and the
step are the same on one device or many. With a mesh, every minibatch is
split along its batch axis over the mesh's data axis, the parameters and
optimizer state are replicated, and XLA sums the partial gradients
``dW = dB^T X`` across devices. The training data are split by rows over the
same axis (when the device count divides the number of examples), so no
device holds the whole data set.

A mesh may span several processes (``jax.distributed``): then arrays are
global, each process holds only the shards on its own devices, and what
``fit`` returns is this process's replica of the (identical) parameters.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxnn._checks import as_array, non_negative_int, positive_int

__all__ = ["DATA_AXES", "Placement", "auto_batch_split", "available_cores", "global_rows", "local_replica",
           "place_data", "place_state", "placement", "process_rows"]

# The mesh axis the batch is split along: the first of these names the mesh has, else its first axis.
DATA_AXES = ("batch", "data")

# batch_split="auto" on a CPU: split only when every part keeps at least this many multiply-adds of
# forward products (rows per part x sum of ins x outs); below it the parts' overhead outweighs a core.
MIN_PART_WORK = 2**22
MAX_AUTO_SPLIT = 8


class Placement(NamedTuple):
    """A one-device or mesh placement: ``mesh`` None means every array on ``device``."""

    device: jax.Device
    mesh: Mesh | None = None
    axis: str | None = None

    @property
    def count(self) -> int:
        """Devices the batch is split over."""
        return 1 if self.mesh is None else int(self.mesh.shape[self.axis])

    @property
    def devices(self) -> list[jax.Device]:
        return [self.device] if self.mesh is None else list(self.mesh.devices.flat)

    @property
    def multiprocess(self) -> bool:
        return len({d.process_index for d in self.devices}) > 1

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def rows(self) -> NamedSharding:
        """Axis 0 split over the data axis: examples (n, ...)."""
        return NamedSharding(self.mesh, PartitionSpec(self.axis))

    def batches(self) -> NamedSharding:
        """Axis 1 split over the data axis: a run of minibatches (steps, batch, ...)."""
        return NamedSharding(self.mesh, PartitionSpec(None, self.axis))


def data_axis(mesh: Mesh) -> str:
    """The axis of ``mesh`` that splits the batch: "batch" or "data" if present, else the first."""
    for name in DATA_AXES:
        if name in mesh.axis_names:
            return name
    return mesh.axis_names[0]


def placement(devices, batch_size: int | None) -> Placement | None:
    """Check ``fit``'s ``devices`` (None, a sequence of devices or a ``Mesh``) and say where to run."""
    if devices is None:
        return None
    if isinstance(devices, Mesh):
        mesh = devices
        if mesh.devices.size == 0:
            raise ValueError("devices: the mesh holds no devices")
    else:
        devices = list(devices) if isinstance(devices, (list, tuple)) else devices
        if not isinstance(devices, list) or not devices or not all(isinstance(d, jax.Device) for d in devices):
            raise TypeError(
                "devices must be a non-empty sequence of jax devices (e.g. jax.devices()) or a "
                f"jax.sharding.Mesh, got {devices!r}"
            )
        if len(set(devices)) != len(devices):
            raise ValueError(f"devices must be distinct, got {devices}")
        if len(devices) == 1:
            return Placement(devices[0])
        mesh = Mesh(np.array(devices), (DATA_AXES[0],))
    axis = data_axis(mesh)
    count = int(mesh.shape[axis])
    if batch_size is not None and batch_size % count:
        raise ValueError(
            f"batch_size must be a multiple of the number of devices to split each minibatch "
            f"evenly: got batch_size {batch_size} for {count} devices (mesh axis {axis!r})"
        )
    return Placement(mesh.devices.flat[0], mesh, axis)


def _mesh_placement(devices) -> Placement:
    where = placement(jax.devices() if devices is None else devices, None)
    if where.mesh is None:
        where = Placement(where.device, Mesh(np.array([where.device]), (DATA_AXES[0],)), DATA_AXES[0])
    return where


def process_rows(n: int, devices=None) -> slice:
    """The rows of an ``n``-example data set that this process reads in a multi-process job.

    ``fit`` splits the examples by rows over the data axis of ``devices``; this
    is the block of rows that lands on this process's devices, so each process
    reads only its own part of the data (``x[process_rows(n)]`` of a memmap,
    or the matching part of a sharded data set) and passes it to
    :func:`global_rows`. With one process it is ``slice(0, n)``.

    Args:
        n: examples in the whole data set; a multiple of the data axis' size.
        devices: what will be passed to ``fit(devices=...)``: a
            ``jax.sharding.Mesh`` or a list of devices; ``None`` means
            ``jax.devices()``, every device of every process.

    Returns:
        A ``slice`` of rows.

    Raises:
        ValueError: ``n`` is not a multiple of the data axis' size.

    >>> import jaxnn
    >>> jaxnn.training.process_rows(8)
    slice(0, 8, None)
    """
    n = non_negative_int("process_rows n", n)
    where = _mesh_placement(devices)
    if n % where.count:
        raise ValueError(f"process_rows: n must be a multiple of the {where.count} devices of the data axis, got {n}")
    spans = sorted({(s[0].start or 0, n if s[0].stop is None else s[0].stop)
                    for s in where.rows().addressable_devices_indices_map((n,)).values()})
    lo, hi = spans[0][0], spans[-1][1]
    if sum(b - a for a, b in spans) != hi - lo:
        raise ValueError("process_rows: this process's devices do not hold one contiguous block of rows of the mesh")
    return slice(lo, hi)


def global_rows(local, devices=None) -> jax.Array:
    """The global array, split by rows like ``fit``'s data, built from this process's rows.

    Every process calls it with its own block ``x[process_rows(n)]``; the
    result is one array of ``n`` rows spread over all processes' devices,
    which ``fit(..., devices=devices)`` trains on without moving it. With one
    process it is ``local`` split over the devices.

    Args:
        local: this process's rows, a NumPy array (a slice of a memmap is
            read here).
        devices: as for :func:`process_rows`.

    Returns:
        A ``jax.Array`` of shape ``(n,) + local.shape[1:]``.

    >>> import numpy as np, jaxnn
    >>> jaxnn.training.global_rows(np.arange(6.0).reshape(3, 2)).shape
    (3, 2)
    """
    if isinstance(local, jax.Array) and not local.is_fully_addressable:
        raise TypeError("global_rows local must be this process's rows, got a global array already spread over "
                        "several processes; pass it to fit as it is")
    numeric = isinstance(local, np.ndarray) and (
        np.issubdtype(local.dtype, np.integer) or jax.numpy.issubdtype(local.dtype, jax.numpy.floating)
    )
    if not numeric:  # a memmap's slice stays on the host; anything else is converted, or refused by name
        local = np.asarray(as_array("global_rows local", local))
    if local.ndim < 1:
        raise ValueError(f"global_rows local must hold rows (ndim >= 1), got shape {local.shape}")
    where = _mesh_placement(devices)
    total = local.shape[0] * jax.process_count() if where.multiprocess else local.shape[0]
    return jax.make_array_from_process_local_data(where.rows(), local, (total,) + local.shape[1:])


def _global(leaf, sharding: NamedSharding):
    """``leaf`` (the same value in every process) as a global array with ``sharding``."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return jax.device_put(leaf, sharding)
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = _global(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    host = np.asarray(jax.device_get(leaf))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def place_state(tree, where: Placement | None, sharding: NamedSharding | None = None):
    """``tree`` on the one device, or over the mesh: replicated, or with ``sharding``; unchanged for the default device.

    Every process holds the whole value; each keeps its own devices' parts.
    """
    if where is None:
        return tree
    if where.mesh is None:
        return jax.device_put(tree, where.device)
    sharding = where.replicated() if sharding is None else sharding
    if where.multiprocess:  # this process's arrays become its part of a global array
        return jax.tree.map(lambda a: _global(a, sharding), tree)
    return jax.device_put(tree, sharding)


def place_data(x, t, where: Placement | None):
    """The training data on the one device, or split by rows over the mesh's data axis.

    Global arrays (from :func:`jaxnn.training.global_rows` in a multi-process
    job) are used as they are. When the device count does not divide the
    number of examples the data are replicated instead.
    """
    if where is None:
        return x, t
    if where.mesh is None:
        return jax.device_put((x, t), where.device)
    out = []
    for a in (x, t):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            out.append(a)
            continue
        sharding = where.rows() if a.shape[0] % where.count == 0 else where.replicated()
        out.append(_global(a, sharding) if where.multiprocess else jax.device_put(a, sharding))
    return tuple(out)


def local_replica(tree, where: Placement | None):
    """What ``fit`` returns: on the first device of one process, or this process's replica of a global tree."""
    if where is None or where.mesh is None:
        return tree
    if where.multiprocess:  # the first device may belong to another process
        return jax.tree.map(
            lambda a: a.addressable_data(0) if isinstance(a, jax.Array) and not a.is_fully_addressable else a, tree
        )
    return jax.device_put(tree, where.device)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def auto_batch_split(
    batch: int, widths, *, platform: str | None = None, cores: int | None = None, devices: int = 1
) -> int:
    """``batch_split="auto"``: the number of independent parts to cut each (per-device) minibatch into.

    On GPUs and TPUs 1: one device already runs a batch's products in
    parallel. On a CPU, the parts' products run on separate cores, so split
    into up to as many parts as there are cores for each device (a power of
    two dividing ``batch``), as long as each part keeps at least
    ``MIN_PART_WORK`` multiply-adds: small nets and small batches are not split.

    Args:
        batch: rows per minibatch on one device.
        widths: the layers' ``(ins, outs)``.
        platform: ``"cpu"``, ``"gpu"``, ``"tpu"``, ...; default: that of ``jax.devices()[0]``.
        cores: CPU cores available to the process; default: those this process may run on.
        devices: devices of this process sharing those cores.
    """
    batch = positive_int("batch", batch)
    devices = positive_int("devices", devices)
    cores = available_cores() if cores is None else positive_int("cores", cores)
    if platform is not None and not isinstance(platform, str):
        raise TypeError(f"platform must be a str such as 'cpu' or 'gpu' (or None), got {type(platform).__name__}")
    if isinstance(widths, (str, bytes)) or not isinstance(widths, (list, tuple)) or not widths:
        raise TypeError(f"widths must be a non-empty list of the layers' (ins, outs), got {widths!r}"[:200])
    for i, pair in enumerate(widths):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"widths[{i}] must be a pair (ins, outs), got {pair!r}"[:200])
        positive_int(f"widths[{i}][0] (ins)", pair[0]), positive_int(f"widths[{i}][1] (outs)", pair[1])
    platform = jax.devices()[0].platform if platform is None else platform
    if platform != "cpu":
        return 1
    per_row = sum(int(i) * int(o) for i, o in widths)
    limit = min(MAX_AUTO_SPLIT, max(1, cores // max(1, devices)))
    k = 1
    while 2 * k <= limit and batch % (2 * k) == 0 and (batch // (2 * k)) * per_row >= MIN_PART_WORK:
        k *= 2
    return k
