from __future__ import annotations

import pytest

from codesign.errors import CodesignError, RuleError
from codesign.rules import (
    NAMED_RULES,
    TERMS,
    PolynomialRule,
    family_equation,
    load_candidate,
    named_rule,
    save_candidate,
    term_monomial,
)


def test_family_has_27_terms_with_their_monomials():
    assert len(TERMS) == 27
    assert term_monomial("theta_000") == "1"
    assert term_monomial("theta_110") == "x*y"
    assert term_monomial("theta_021") == "y**2*w"
    assert term_monomial("theta_212") == "x**2*y*w**2"


@pytest.mark.parametrize(
    "name, equation",
    [
        ("oja", "dw/dt = eta * (-y**2*w + x*y) : 1 (clock-driven)"),
        ("anti_oja", "dw/dt = eta * (y**2*w - x*y) : 1 (clock-driven)"),
        ("hebb", "dw/dt = eta * (x*y) : 1 (clock-driven)"),
        ("anti_hebbian", "dw/dt = eta * (-x*y) : 1 (clock-driven)"),
        ("zero", "dw/dt = eta * (0) : 1 (clock-driven)"),
    ],
)
def test_named_rule_equations(name, equation):
    assert named_rule(name).equation() == equation


def test_equations_are_valid_brian2_and_use_the_given_names():
    from brian2 import Equations

    text = named_rule("oja").equation(pre="x_pre", post="y_post")
    assert text == "dw/dt = eta * (-y_post**2*w + x_pre*y_post) : 1 (clock-driven)"
    eqs = Equations(text)
    assert set(eqs.diff_eq_names) == {"w"}
    assert {"x_pre", "y_post", "eta"} <= eqs.identifiers


def test_family_equation_keeps_coefficients_as_variables():
    text = family_equation(["theta_000", "theta_110"], pre="x_pre", post="y_post", coefficient_suffix="_post")
    assert text == "dw/dt = eta * (theta_000_post + theta_110_post*x_pre*y_post) : 1 (clock-driven)"


def test_readable_and_normalised():
    rule = PolynomialRule({"theta_110": 0.5, "theta_021": -0.5, "theta_000": 0.05})
    assert rule.readable() == "dw/dt = eta (0.05 - 0.5 y^2 w + 0.5 x y)"
    assert rule.normalised() == pytest.approx({"theta_000": 0.1, "theta_021": -1.0, "theta_110": 1.0})


def test_bad_rules_are_refused():
    with pytest.raises(RuleError, match="unknown term 'theta_300'"):
        PolynomialRule({"theta_300": 1.0})
    with pytest.raises(RuleError, match="is nan"):
        PolynomialRule({"theta_110": float("nan")})
    with pytest.raises(CodesignError, match="unknown rule 'ojas'.*oja"):
        named_rule("ojas")


def test_rule_file_round_trip(tmp_path):
    rule = PolynomialRule({"theta_110": 0.9, "theta_021": -0.8}, eta=4.0, name="found")
    path = tmp_path / "rule.yaml"
    save_candidate({"w": rule}, path, loss=0.01)
    (loaded,) = load_candidate(path, {"w": "polynomial"}).values()
    assert loaded.coefficients == rule.coefficients
    assert loaded.eta == 4.0
    assert "loss: 0.01" in path.read_text()


def test_rule_file_with_unknown_term_names_the_key(tmp_path):
    path = tmp_path / "rule.yaml"
    path.write_text("coefficients: {theta_110: 1.0, theta_900: 2.0}\n")
    with pytest.raises(CodesignError) as info:
        load_candidate(path, {"w": "polynomial"})
    assert "coefficients.theta_900: unknown term" in str(info.value)


def test_every_named_rule_is_in_the_family():
    for name in NAMED_RULES:
        assert set(named_rule(name).coefficients) <= set(TERMS)
