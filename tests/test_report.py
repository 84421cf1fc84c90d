from xdray.frontier.frontier import pareto_front, recommend

POINTS = [
    {"name": "a", "f1": 0.80, "params": 100, "retention": 0.90},  # smallest
    {"name": "b", "f1": 0.85, "params": 200, "retention": 0.955},
    {"name": "c", "f1": 0.84, "params": 300, "retention": 0.94},  # dominated by b
    {"name": "d", "f1": 0.88, "params": 400, "retention": 0.99},  # best
    {"name": "e", "f1": 0.85, "params": 200, "retention": 0.955},  # ties with b: neither dominates
]


def test_pareto_front_marks_only_undominated_points():
    assert pareto_front(POINTS, "f1", ["params"]) == [True, True, False, True, True]


def test_pareto_with_two_costs():
    points = [{"f1": 0.8, "params": 1, "latency": 5}, {"f1": 0.8, "params": 2, "latency": 1},
              {"f1": 0.7, "params": 2, "latency": 5}]
    assert pareto_front(points, "f1", ["params", "latency"]) == [True, True, False]


def test_recommend_the_smallest_that_keeps_enough():
    assert POINTS[recommend(POINTS, 0.95)]["name"] == "b"
    assert POINTS[recommend(POINTS, 0.98)]["name"] == "d"
    assert recommend(POINTS, 0.999) is None
