"""Sentences chosen by measured readings: both signs, both orderings, no negative zero."""
import math

from rql_lite.teaching import readings


def test_number_never_prints_a_negative_zero():
    assert readings.number(-0.0001, ".2f") == "0.00"
    assert readings.number(-0.0, ".1f") == "0.0"
    assert readings.number(-0.2, ".1f") == "-0.2"
    assert readings.number(0.004, ".0%") == "0%" and readings.number(-0.004, ".0%") == "0%"
    assert readings.magnitude(-0.184) == "0.184"


def test_linear_label_for_both_signs_of_the_slope():
    assert readings.linear_label(16.2, 2.04) == "16 + 2.0 K"
    assert readings.linear_label(16.2, -2.04) == "16 - 2.0 K"
    assert readings.linear_label(16.2, -0.01) == "16 + 0.0 K"      # not "16 + -0.0 K"
    assert readings.linear_label(-3.0, 0.5, var="L") == "-3 + 0.5 L"


def test_compare_for_both_orderings():
    assert readings.compare(1.0, 0.816, "V(z, 0)", "V(a, 1)") == "V(z, 0) exceeds V(a, 1) by 0.184"
    assert readings.compare(0.816, 1.0, "V(z, 0)", "V(a, 1)") == "V(z, 0) is below V(a, 1) by 0.184"
    assert readings.compare(-44.0, -43.5, "A", "B", ".1f") == "A is below B by 0.5"
    assert readings.compare(-43.5, -44.0, "A", "B", ".1f") == "A exceeds B by 0.5"
    assert "equals" in readings.compare(0.10001, 0.1, "A", "B")
    assert "-" not in readings.compare(0.2, 0.5, "A", "B")


def test_change_for_both_signs_and_zero():
    assert readings.change(3.04, "TFQL's count", per="per flow step") == "TFQL's count grows by 3.0 per flow step"
    assert readings.change(-3.04, "RQL's count", per="per flow step") == "RQL's count falls by 3.0 per flow step"
    assert readings.change(-0.01, "RQL's count", per="per flow step") == \
        "RQL's count does not change measurably per flow step"
    assert "does not change" in readings.change(0.4, "x", tol=0.5)


def test_ranking_states_order_and_whether_intervals_separate():
    means = {"BC flow": 0.60, "RQL": 0.91, "TFQL": 0.62}
    ci = {"BC flow": (0.55, 0.65), "RQL": (0.88, 0.94), "TFQL": (0.50, 0.70)}
    text = readings.ranking(means, ci)
    assert text.index("RQL") < text.index("TFQL") < text.index("BC flow")
    assert "RQL (0.91) > TFQL (0.62), intervals apart" in text
    assert "TFQL (0.62) > BC flow (0.60), intervals overlap" in text
    # The other ordering of the same names.
    flipped = readings.ranking({"BC flow": 0.91, "RQL": 0.60, "TFQL": 0.62}, {"BC flow": (0.88, 0.94),
                               "RQL": (0.55, 0.65), "TFQL": (0.50, 0.70)})
    assert flipped.index("BC flow") < flipped.index("TFQL") < flipped.index("RQL")
    assert "not measured: X" in readings.ranking({"A": 0.5, "X": math.nan}, None)
    assert readings.ranking({"A": -0.5, "B": -0.2}) == "B (-0.20) > A (-0.50)"


def test_separated_order_only_when_every_neighbouring_pair_is_apart():
    ci = {"RQL": (0.8, 0.9), "TFQL": (0.5, 0.7), "BC": (0.1, 0.3)}
    means = {"RQL": 0.85, "TFQL": 0.6, "BC": 0.2}
    assert readings.separated_order(means, ci) == ["RQL", "TFQL", "BC"]
    assert readings.separated_order({"RQL": 0.2, "TFQL": 0.6, "BC": 0.85},
                                    {"RQL": (0.1, 0.3), "TFQL": (0.5, 0.7), "BC": (0.8, 0.9)}) == ["BC", "TFQL", "RQL"]
    ci["TFQL"] = (0.25, 0.82)
    assert readings.separated_order(means, ci) == []


def test_zero_width_intervals_separate_nothing():
    # Two seeds that both scored 1 of 30 give the interval [3, 3]: not a measured spread.
    means, ci = {"FAWAC": 3.0, "BC flow": 0.0}, {"FAWAC": (3.0, 3.0), "BC flow": (0.0, 0.0)}
    assert readings.ranking(means, ci, ".0f") == "FAWAC (3) > BC flow (0), intervals overlap"
    assert readings.separated_order(means, ci) == []
    assert readings.can_separate((0.5, 0.7), (0.1, 0.3)) and not readings.can_separate((0.5, 0.5), (0.1, 0.3))


def test_ranking_gives_seeds_and_judges_only_pairs_with_intervals():
    text = readings.ranking({"RQL": 87.0, "IFQL": 78.0, "FQL": 3.0}, {"RQL": (70.0, 99.0), "IFQL": (60.0, 90.0)}, ".0f",
                            seeds={"RQL": (97, 77), "IFQL": (73, 83), "FQL": (0, 7)})
    assert text == "RQL (87; seeds 97, 77) > IFQL (78; seeds 73, 83) > FQL (3; seeds 0, 7); intervals: RQL and IFQL overlap"
