"""One process of the two-process training test (tests/training/test_multiprocess.py); also the one-process references.

python tests/training/multiprocess_worker.py FOLDER NUM_PROCESSES PROCESS_ID PORT [peer]

Trains 2 epochs with ``jaxnn.fit`` and a ``jaxnn.Checkpoint`` on a global data
set of which this process reads only its own rows (from a memmap), then loads
the checkpoint into a fresh template and trains 1 more epoch from it. Writes
the parameters after each stage to FOLDER/params_<NUM_PROCESSES>x<DEVICES>_<PROCESS_ID>.npz,
DEVICES being this process's devices (more than one where the launcher forces
them with XLA_FLAGS). Every run shuffles within 2 shards of rows: the default
over 2 devices, ``shards=2`` on one.

With ``peer`` it trains 50 epochs with a ``Checkpoint`` instead, and the last
process kills itself (SIGKILL) once epoch 2 is saved; the others print the
``jaxnn.training.PeerError`` they get and exit.
"""

import os
import sys

folder, nproc, pid, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

import jax  # noqa: E402  (JAX_PLATFORMS=cpu comes from the launcher's environment)

if nproc > 1:  # before any other jax call
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid,
        initialization_timeout=30, heartbeat_timeout_seconds=10, shutdown_timeout_seconds=10,
    )

import signal  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import jaxnn  # noqa: E402

net = jaxnn.Network.from_sizes((20, 32, 4), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
params = [(np.asarray(W), np.asarray(b)) for W, b in net.init(jax.random.key(42), dtype=np.float32)]
optimizer = optax.adam(1e-2)
tag = f"{nproc}x{len(jax.local_devices())}"
shards = 2 if len(jax.devices()) == 1 else None  # the order 2 devices draw by default, on one device
settings = dict(optimizer=optimizer, batch_size=32, key=jax.random.key(3), devices=jax.devices(), shards=shards)

xm = np.load(os.path.join(folder, "x.npy"), mmap_mode="r")
tm = np.load(os.path.join(folder, "t.npy"), mmap_mode="r")
rows = jaxnn.training.process_rows(xm.shape[0])  # this process reads these rows and no others
x, t = jaxnn.training.global_rows(xm[rows]), jaxnn.training.global_rows(tm[rows])
assert x.shape == xm.shape and (nproc == 1 or not x.is_fully_addressable)

if sys.argv[5:] == ["peer"]:
    class KillAfter(jaxnn.Callback):
        def on_epoch_end(self, state, logs):
            if int(state.epoch) == 2 and pid == nproc - 1:
                os.kill(os.getpid(), signal.SIGKILL)

    path = os.path.join(folder, "peer.npz")
    try:
        jaxnn.fit(net, params, x, t, epochs=50, callbacks=[jaxnn.Checkpoint(path), KillAfter()], **settings)
    except jaxnn.training.PeerError as e:
        print(f"PeerError at {time.time():.3f}: epoch={e.epoch} steps={e.steps} checkpoint={e.checkpoint} "
              f"checkpoint_epoch={e.checkpoint_epoch}\n{e}", flush=True)
        sys.exit(3)
    sys.exit(0)

path = os.path.join(folder, f"state_{tag}.npz")
state, history = jaxnn.fit(net, params, x, t, epochs=2, callbacks=[jaxnn.Checkpoint(path)], **settings)
trained = [np.asarray(a) for a in jax.tree.leaves(state.params)]

like = jaxnn.TrainState(state.params, optimizer.init(state.params), 0)  # this process's arrays as the template
resumed, _ = jaxnn.fit(net, jaxnn.load(path, like=like), x, t, epochs=1, **settings)
np.savez(os.path.join(folder, f"params_{tag}_{pid}.npz"), *trained,
         *[np.asarray(a) for a in jax.tree.leaves(resumed.params)], loss=history["loss"],
         epoch=np.asarray(resumed.epoch))
if nproc > 1:
    jax.distributed.shutdown()
print("done", pid, flush=True)
