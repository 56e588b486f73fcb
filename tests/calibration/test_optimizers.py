"""The optimizer front door on small problems with known solutions (independent of any volatility model)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so

from calibration.errors import CalibrationError
from calibration.optimizers import (
    LOSSES,
    OPTIMIZERS,
    BoundTransform,
    CalibrationCancelled,
    LeastSquaresProblem,
    OptimizerSettings,
    ProgressMonitor,
    loss_rho,
    minimize,
    multistart_points,
)

INF = np.inf


class Recorder:
    """Wraps residual and Jacobian functions, recording every point they are called at."""

    def __init__(self, fun, jac=None):
        self._fun, self._jac = fun, jac
        self.points: list[np.ndarray] = []

    def fun(self, x):
        self.points.append(np.array(x, dtype=float))
        return self._fun(np.asarray(x, dtype=float))

    def jac(self, x):
        self.points.append(np.array(x, dtype=float))
        return self._jac(np.asarray(x, dtype=float))


def rosenbrock(x):
    return np.array([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def rosenbrock_jac(x):
    return np.array([[-20.0 * x[0], 10.0], [-1.0, 0.0]])


def rosenbrock_problem(rec: Recorder, *, with_jac: bool = True, x0=(-1.2, 1.0)) -> LeastSquaresProblem:
    # the bound x0 <= 0.5 is active: the constrained minimum is (0.5, 0.25) (r1 = 0 there, r2 = 0.5)
    return LeastSquaresProblem(
        fun=rec.fun,
        jac=rec.jac if with_jac else None,
        x0=np.array(x0),
        lower=np.array([-2.0, -1.0]),
        upper=np.array([0.5, 3.0]),
        search_lower=np.array([-2.0, -1.0]),
        search_upper=np.array([0.5, 3.0]),
    )


@pytest.mark.parametrize("method", OPTIMIZERS)
def test_every_method_finds_the_bounded_rosenbrock_minimum_and_never_leaves_the_bounds(method):
    rec = Recorder(rosenbrock, rosenbrock_jac)
    problem = rosenbrock_problem(rec)
    out = minimize(problem, OptimizerSettings(method=method, max_evals=4000))
    assert out.success, out.message
    # ftol = 1e-10 relative to a cost of 0.125 leaves x[1] free to about 1e-6
    np.testing.assert_allclose(out.x, [0.5, 0.25], atol=1e-5 if method in ("nelder", "de") else 1e-6)
    assert out.cost == pytest.approx(0.5 * 0.25, rel=1e-6)
    points = np.array(rec.points)
    assert np.all(points >= problem.lower) and np.all(points <= problem.upper)
    assert out.nfev > 0


def exp_decay_problem(rec: Recorder, lower, upper, x0):
    t = np.linspace(0.0, 4.0, 25)
    y = 2.5 * np.exp(-1.3 * t) + 0.4

    def fun(p):
        return p[0] * np.exp(-p[1] * t) + p[2] - y

    def jac(p):
        e = np.exp(-p[1] * t)
        return np.column_stack([e, -p[0] * t * e, np.ones_like(t)])

    rec._fun, rec._jac = fun, jac
    return LeastSquaresProblem(
        fun=rec.fun, jac=rec.jac, x0=np.asarray(x0, dtype=float), lower=np.asarray(lower, dtype=float),
        upper=np.asarray(upper, dtype=float), search_lower=np.array([0.0, 0.0, -1.0]),
        search_upper=np.array([5.0, 5.0, 1.0]),
    )


@pytest.mark.parametrize("method", OPTIMIZERS)
@pytest.mark.parametrize(
    "lower, upper",
    [([0.0, 0.0, -1.0], [5.0, 5.0, 1.0]), ([0.0, 0.0, -INF], [INF, INF, INF]), ([-INF, -INF, -INF], [10.0, 3.0, 1.0])],
    ids=["two-sided", "lower-only", "upper-only"],
)
def test_nonlinear_least_squares_with_known_solution(method, lower, upper):
    rec = Recorder(None, None)
    problem = exp_decay_problem(rec, lower, upper, x0=[1.0, 0.5, 0.0])
    out = minimize(problem, OptimizerSettings(method=method, max_evals=3000 if method == "de" else 6000))
    tol = 2e-4 if method == "nelder" else 1e-7
    np.testing.assert_allclose(out.x, [2.5, 1.3, 0.4], atol=tol)
    points = np.array(rec.points)
    assert np.all(points >= problem.lower) and np.all(points <= problem.upper)


def test_scipy_finite_differences_when_the_problem_has_no_jacobian():
    for method in ("lm", "trf", "lbfgsb"):
        rec = Recorder(rosenbrock)
        out = minimize(rosenbrock_problem(rec, with_jac=False), OptimizerSettings(method=method))
        np.testing.assert_allclose(out.x, [0.5, 0.25], atol=1e-6)


def test_lm_works_with_fewer_residuals_than_parameters():
    # one residual, two parameters: MINPACK refuses such problems unless padded
    problem = LeastSquaresProblem(
        fun=lambda x: np.array([x[0] + 2.0 * x[1] - 1.0]),
        jac=lambda x: np.array([[1.0, 2.0]]),
        x0=np.array([0.0, 0.0]), lower=np.array([-1.0, -1.0]), upper=np.array([1.0, 1.0]),
        search_lower=np.array([-1.0, -1.0]), search_upper=np.array([1.0, 1.0]),
    )
    out = minimize(problem, OptimizerSettings(method="lm"))
    assert out.x[0] + 2.0 * out.x[1] == pytest.approx(1.0, abs=1e-10)


def test_differential_evolution_is_reproducible_with_a_seed():
    runs = []
    for seed in (7, 7, 8):
        rec = Recorder(rosenbrock, rosenbrock_jac)
        out = minimize(rosenbrock_problem(rec), OptimizerSettings(method="de", seed=seed, max_evals=1500))
        runs.append((out, np.array(rec.points)))
    (a, pa), (b, pb), (c, pc) = runs
    np.testing.assert_array_equal(a.x, b.x)
    assert a.nfev == b.nfev
    np.testing.assert_array_equal(pa, pb)  # the very same path
    assert pa.shape != pc.shape or not np.array_equal(pa, pc)  # another seed, another path


def two_minima_problem() -> LeastSquaresProblem:
    # C(x) = ((x^2 - 1)^2 + 0.09 (x + 1)^2) / 2: global minimum 0 at x = -1, a local one near x = +0.96
    c = 0.3
    return LeastSquaresProblem(
        fun=lambda x: np.array([x[0] ** 2 - 1.0, c * (x[0] + 1.0)]),
        jac=lambda x: np.array([[2.0 * x[0]], [c]]),
        x0=np.array([1.2]), lower=np.array([-2.0]), upper=np.array([2.0]),
        search_lower=np.array([-2.0]), search_upper=np.array([2.0]),
    )


@pytest.mark.parametrize("method", ["lm", "trf", "lbfgsb", "nelder"])
def test_multistart_finds_the_global_minimum_a_single_start_misses(method):
    single = minimize(two_minima_problem(), OptimizerSettings(method=method))
    assert single.x[0] > 0.5  # the local minimum
    multi = minimize(two_minima_problem(), OptimizerSettings(method=method, starts=6, seed=3))
    assert multi.x[0] == pytest.approx(-1.0, abs=1e-5)
    assert multi.cost == pytest.approx(0.0, abs=1e-10)
    assert multi.nfev > single.nfev
    assert "best of 6 starts" in multi.message


def test_differential_evolution_finds_the_global_minimum():
    out = minimize(two_minima_problem(), OptimizerSettings(method="de", seed=1))
    assert out.x[0] == pytest.approx(-1.0, abs=1e-8)
    assert "polish" in out.message


def test_multistart_points_are_seeded_and_inside_the_search_box():
    problem = rosenbrock_problem(Recorder(rosenbrock, rosenbrock_jac))
    a = multistart_points(problem, 16, seed=5)
    b = multistart_points(problem, 16, seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 2)
    assert np.all(a >= problem.search_lower) and np.all(a <= problem.search_upper)
    # Latin hypercube: one point in each of the 16 strata of every coordinate
    strata = np.floor((a - problem.search_lower) / (problem.search_upper - problem.search_lower) * 16).astype(int)
    for j in range(2):
        assert sorted(strata[:, j]) == list(range(16))


def test_global_methods_need_a_finite_search_box():
    problem = LeastSquaresProblem(
        fun=lambda x: x - 1.0, jac=lambda x: np.eye(1), x0=np.array([0.0]), lower=np.array([-INF]),
        upper=np.array([INF]), search_lower=np.array([-INF]), search_upper=np.array([INF]),
    )
    with pytest.raises(CalibrationError, match="finite search box"):
        minimize(problem, OptimizerSettings(method="de"))
    with pytest.raises(CalibrationError, match="finite search box"):
        minimize(problem, OptimizerSettings(method="lm", starts=3))
    assert minimize(problem, OptimizerSettings(method="lm")).x[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "bfgs"}, "unknown optimizer"),
        ({"max_evals": 0}, "max_evals"),
        ({"ftol": -1.0}, "ftol"),
        ({"starts": -1}, "starts"),
        ({"method": "de", "starts": 4}, "already global"),
    ],
)
def test_bad_optimizer_settings_are_calibration_errors(kwargs, match):
    with pytest.raises(CalibrationError, match=match):
        OptimizerSettings(**kwargs)


@pytest.mark.parametrize("method", OPTIMIZERS)
def test_progress_counts_every_evaluation_when_not_throttled(method):
    seen = []
    monitor = ProgressMonitor(lambda info: seen.append(info), interval_s=0.0)
    out = minimize(rosenbrock_problem(Recorder(rosenbrock, rosenbrock_jac)), OptimizerSettings(method=method),
                   monitor=monitor)
    assert len(seen) == out.nfev == monitor.nfev
    assert [s.nfev for s in seen] == list(range(1, out.nfev + 1))
    errors = [s.rmse_vol_points for s in seen]
    assert all(b <= a + 1e-15 for a, b in zip(errors, errors[1:]))  # the best point so far never gets worse
    assert errors[-1] == pytest.approx(np.sqrt(out.cost))  # rms of the two residuals: sqrt(2 C / 2)


def test_progress_is_throttled():
    seen = []
    monitor = ProgressMonitor(lambda info: seen.append(info), interval_s=3600.0)
    out = minimize(rosenbrock_problem(Recorder(rosenbrock, rosenbrock_jac)), OptimizerSettings(method="nelder"),
                   monitor=monitor)
    assert out.nfev > 50 and len(seen) == 1  # only the first evaluation is reported within the hour


@pytest.mark.parametrize("method", OPTIMIZERS)
@pytest.mark.parametrize("how", ["return", "raise"])
def test_progress_callback_cancels(method, how):
    calls = []

    def callback(info):
        calls.append(info.nfev)
        if len(calls) == 5:
            if how == "raise":
                raise CalibrationCancelled
            return True
        return None

    rec = Recorder(rosenbrock, rosenbrock_jac)
    out = minimize(rosenbrock_problem(rec), OptimizerSettings(method=method, starts=3 if method == "lm" else 1),
                   monitor=ProgressMonitor(callback, interval_s=0.0))
    assert out.cancelled and not out.success and out.message == "cancelled"
    assert out.nfev == 5 and len(calls) == 5
    # the best point seen so far is returned
    costs = [0.5 * float(np.sum(rosenbrock(p) ** 2)) for p in rec.points]
    assert out.cost == pytest.approx(min(costs))


@pytest.mark.parametrize("method", ["lm", "trf", "lbfgsb", "nelder"])
def test_out_of_evaluations_is_a_failure_with_the_reason(method):
    problem = rosenbrock_problem(Recorder(rosenbrock, rosenbrock_jac))
    out = minimize(problem, OptimizerSettings(method=method, max_evals=3))
    assert not out.success
    assert "maximum number of evaluations" in out.message


# -- robust losses ---------------------------------------------------------------------------------------------


def test_loss_functions_match_scipy_least_squares_costs():
    r = np.array([-3.0, -0.7, -0.01, 0.0, 0.2, 0.9, 1.0, 4.5])
    for loss in LOSSES:
        for f in (0.3, 1.0, 2.0):
            problem = LeastSquaresProblem(
                fun=lambda x: r, x0=np.zeros(1), lower=-np.ones(1), upper=np.ones(1), search_lower=-np.ones(1),
                search_upper=np.ones(1), loss=loss, f_scale=f,
            )
            # scipy's cost of a residual vector that does not depend on x: evaluated once at x0
            ref = so.least_squares(lambda x: r, np.zeros(1), jac=lambda x: np.zeros((r.size, 1)), loss=loss,
                                   f_scale=f, max_nfev=1)
            assert problem.cost(r) == pytest.approx(ref.cost, rel=1e-14), (loss, f)


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_derivatives(loss):
    z = np.array([0.0, 1e-9, 0.3, 0.999, 1.001, 2.0, 50.0])
    rho = loss_rho(z, loss)
    h = 1e-6
    up, down = loss_rho(z + h, loss), loss_rho(np.maximum(z - h, 0.0), loss)
    step = (z + h) - np.maximum(z - h, 0.0)
    np.testing.assert_allclose(rho[1], (up[0] - down[0]) / step, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(rho[2], (up[1] - down[1]) / step, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(rho[0][:2], z[:2], rtol=1e-8)  # rho(z) ~ z near 0: same as least squares
    np.testing.assert_allclose(rho[1][0], 1.0)


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy"])
def test_every_method_minimises_the_same_robust_cost(loss):
    # a line fit with two gross outliers; scipy's own trf with the string loss is the reference
    rng = np.random.default_rng(11)
    t = np.linspace(0.0, 1.0, 30)
    y = 1.0 + 2.0 * t + 0.01 * rng.standard_normal(30)
    y[[4, 20]] += [3.0, -2.0]

    def fun(p):
        return p[0] + p[1] * t - y

    def jac(p):
        return np.column_stack([np.ones_like(t), t])

    ref = so.least_squares(fun, [0.0, 0.0], jac=jac, loss=loss, f_scale=0.05, method="trf", xtol=1e-14,
                           ftol=1e-14, gtol=1e-14)
    problem = LeastSquaresProblem(
        fun=fun, jac=jac, x0=np.zeros(2), lower=np.array([-10.0, -10.0]), upper=np.array([10.0, 10.0]),
        search_lower=np.array([-10.0, -10.0]), search_upper=np.array([10.0, 10.0]), loss=loss, f_scale=0.05,
    )
    for method in OPTIMIZERS:
        settings = OptimizerSettings(method=method, max_evals=1500 if method == "de" else 5000,
                                     starts=4 if method != "de" else 0)
        out = minimize(problem, settings)
        assert out.cost == pytest.approx(ref.cost, rel=1e-6), method
        np.testing.assert_allclose(out.x, ref.x, atol=2e-4 if method == "nelder" else 1e-6, err_msg=method)
    # and the robust fit is not the least-squares fit
    plain = so.least_squares(fun, [0.0, 0.0], jac=jac)
    assert abs(plain.x[1] - ref.x[1]) > 0.1


def test_penalty_rows_are_not_subject_to_the_robust_loss():
    # the second row is a penalty row: its cost is r^2/2 whatever the loss
    problem = LeastSquaresProblem(
        fun=lambda x: np.array([x[0], 10.0 * x[0]]), x0=np.zeros(1), lower=-np.ones(1), upper=np.ones(1),
        search_lower=-np.ones(1), search_upper=np.ones(1), n_robust=1, loss="cauchy", f_scale=0.1,
    )
    r = np.array([2.0, 20.0])
    assert problem.cost(r) == pytest.approx(0.5 * (0.01 * np.log1p(400.0) + 400.0))


# -- bound transform --------------------------------------------------------------------------------------------


def test_bound_transform_round_trip_and_derivative():
    lower = np.array([-1.0, 0.0, -INF, -INF])
    upper = np.array([2.0, INF, 5.0, INF])
    transform = BoundTransform(lower=lower, upper=upper, scale=np.array([3.0, 0.5, 2.0, 1.0]))
    theta = np.array([0.3, 1.7, -4.0, 12.0])
    x = transform.to_internal(theta)
    np.testing.assert_allclose(transform.to_external(x), theta, rtol=1e-12)
    h = 1e-6
    for j in range(4):
        e = np.zeros(4)
        e[j] = h
        fd = (transform.to_external(x + e) - transform.to_external(x - e))[j] / (2 * h)
        assert transform.derivative(x)[j] == pytest.approx(fd, rel=1e-7)
    # every internal point maps inside the bounds
    for z in np.random.default_rng(0).normal(scale=50.0, size=(200, 4)):
        t = transform.to_external(z)
        assert np.all(t >= lower) and np.all(t <= upper)
