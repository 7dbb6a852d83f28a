"""The series' student-teacher experiment: students learn a trained teacher's outputs, not the labels.

A 64-16-16-10 teacher (LeakyReLU, linear output) is trained with softmax
cross-entropy on scikit-learn's bundled 8x8 digits. Then students, each a
single 10-unit sigmoid layer on the 64 pixels, learn by per-example SGD and
MSE to reproduce the teacher's output probabilities on the training images;
they never see a label. All the students, one per learning rate, train at
once: the training run is a pure function of the learning rate, mapped with
``jax.vmap``. The script prints each student's test accuracy next to the
teacher's, and how often the two agree.

    python examples/teacher_student.py [--lrs 0.01 0.03 0.1 0.3 1 3] [--epochs 20] [--seed 0]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import optax
from sklearn.datasets import load_digits

import jaxnn


def load(key, test_fraction=0.2):
    digits = load_digits()
    x = jnp.asarray(digits.data, jnp.float32) / 16.0
    y = jnp.asarray(digits.target, jnp.int32)
    order = jax.random.permutation(key, len(x))
    test, train = order[: int(len(x) * test_fraction)], order[int(len(x) * test_fraction) :]
    return x[train], y[train], x[test], y[test]


def predictions(net, params, x):
    return jnp.argmax(net.forward(params, x), -1)


def make_train_student(student, epochs, key):
    """``train(lr, params, x, t) -> params``: per-example SGD, ``epochs`` shuffled passes, one scan."""

    def train(lr, params, x, t):
        optimizer = optax.sgd(lr)
        step = jaxnn.make_train_step(student, optimizer)
        order = jax.vmap(lambda k: jax.random.permutation(k, len(x)))(jax.random.split(key, epochs))

        def body(carry, i):
            params, opt_state, _ = step(*carry, x[i], t[i])
            return (params, opt_state), None

        (params, _), _ = jax.lax.scan(body, (params, optimizer.init(params)), order.ravel())
        return params

    return train


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
                        help="the students' learning rates")
    parser.add_argument("--epochs", type=int, default=20, help="for the teacher and each student")
    parser.add_argument("--teacher-lr", type=float, default=0.02, help="the teacher's learning rate")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    args = parser.parse_args()

    data_key, teacher_key, student_key, shuffle_key = jax.random.split(jax.random.key(args.seed), 4)
    x_train, y_train, x_test, y_test = load(data_key)

    activations = [jaxnn.LeakyReLU(), jaxnn.LeakyReLU(), jaxnn.Identity()]
    teacher = jaxnn.Network.from_sizes((64, 16, 16, 10), activations, jaxnn.CrossEntropyLoss())
    start = time.perf_counter()
    state, history = jaxnn.fit(
        teacher, teacher.init(teacher_key), x_train, y_train, optimizer=optax.sgd(args.teacher_lr),
        batch_size=1, epochs=args.epochs, key=shuffle_key,
    )
    teacher_params = state.params
    teacher_test = predictions(teacher, teacher_params, x_test)
    teacher_accuracy = float(jnp.mean(teacher_test == y_test))
    loss = history["loss"]
    print(f"teacher 64-16-16-10, cross-entropy on the labels (training loss {loss[0]:.4f} -> {loss[-1]:.4f}): "
          f"test accuracy {teacher_accuracy:.1%} ({time.perf_counter() - start:.2f} s)")

    # The students' targets: the teacher's probabilities, not the labels.
    soft_targets = jax.nn.softmax(teacher.forward(teacher_params, x_train), axis=-1)
    student = jaxnn.Network([jaxnn.Layer(64, 10, jaxnn.Sigmoid())], jaxnn.MSELoss())
    start_params = student.init(student_key)
    train = make_train_student(student, args.epochs, shuffle_key)
    lrs = jnp.asarray(args.lrs)
    start = time.perf_counter()
    train_all = jax.jit(jax.vmap(train, in_axes=(0, None, None, None)))  # one run per learning rate
    students = train_all(lrs, start_params, x_train, soft_targets)
    jax.block_until_ready(students)
    print(f"{len(args.lrs)} students (64-10 sigmoid, MSE to the teacher's outputs) trained at once in "
          f"{time.perf_counter() - start:.2f} s")

    student_test = jax.vmap(predictions, in_axes=(None, 0, None))(student, students, x_test)
    print(f"{'student lr':>10}  {'student accuracy':>16}  {'teacher accuracy':>16}  "
          f"{'agrees with teacher':>19}")
    for lr, guess in zip(args.lrs, student_test):
        print(f"{lr:>10g}  {float(jnp.mean(guess == y_test)):>16.1%}  {teacher_accuracy:>16.1%}  "
              f"{float(jnp.mean(guess == teacher_test)):>19.1%}")


if __name__ == "__main__":
    main()
