import pytest

from helpers import TINY_DETECTOR
from qmimic.models import build_detector, count_parameters, model_report


@pytest.mark.parametrize("framework", ["faster_rcnn", "rfcn"])
def test_report_counts_parameters_and_flops_at_the_test_budget(framework: str):
    reports = []
    for width in (1 / 4, 1 / 16):
        detector = build_detector(framework=framework, width=width, **TINY_DETECTOR).train()
        report = model_report(detector)
        assert detector.training  # the mode is restored
        assert report["parameters"] == count_parameters(detector)
        assert report["input_size"] == [96, 96]
        assert report["proposals"] == TINY_DETECTOR["rpn_post_nms_top_n_test"]
        reports.append(report)
    wide, narrow = reports
    assert narrow["gflops"] > 0 and wide["gflops"] > 4 * narrow["gflops"]


def test_report_takes_an_input_size():
    detector = build_detector(width=1 / 16, **{**TINY_DETECTOR, "max_size": 200})
    small = model_report(detector, image_size=(96, 96))["gflops"]
    large = model_report(detector, image_size=(96, 192))
    assert large["input_size"] == [96, 192] and large["gflops"] > small
