"""ImageNet weights: the local-file route, the names torchvision uses, and the failure messages."""

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision

from helpers import TINY_DETECTOR
from qmimic.errors import UserError
from qmimic.models import FRAMEWORKS, DetectorConfigError, build_detector
from qmimic.models import pretrained as pretrained_module
from qmimic.models.vgg import VGG16RoIHead, VGG16Trunk


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_local_weights_load_into_trunk_and_layer4(resnet18_file, framework: str):
    path, state = resnet18_file
    detector = build_detector(
        framework=framework, width=1.0, pretrained=True, weights_path=str(path), **TINY_DETECTOR
    )
    trunk = detector.trunk.state_dict()
    assert len(trunk) > 50
    for name, tensor in trunk.items():
        torch.testing.assert_close(tensor, state[name], msg=name)
    layer4 = {f"layer4.{k}": v for k, v in detector.roi_heads.box_head.layer4.state_dict().items()}
    for name, tensor in layer4.items():
        torch.testing.assert_close(tensor, state[name], msg=name)


def test_vgg16_modules_carry_torchvision_names_and_shapes():
    with torch.device("meta"):
        reference = torchvision.models.vgg16(weights=None).state_dict()
        ours = VGG16Trunk().state_dict() | VGG16RoIHead(512, roi_output_size=7).state_dict()
    assert len(ours) == 2 * (13 + 2)
    for name, tensor in ours.items():
        assert reference[name].shape == tensor.shape, name


def test_failed_download_suggests_a_local_file(monkeypatch: pytest.MonkeyPatch):
    def offline(arch: str):
        raise URLError("no route to host")

    monkeypatch.setattr(pretrained_module, "download_state_dict", offline)
    with pytest.raises(UserError) as error:
        build_detector(width=1.0, pretrained=True, **TINY_DETECTOR)
    message = str(error.value)
    assert "no route to host" in message
    assert torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url in message
    assert "model.weights_path=" in message and "model.pretrained=false" in message


def test_pretrained_needs_full_width():
    with pytest.raises(DetectorConfigError, match="width 1 only.*model.pretrained=false"):
        build_detector(width=1 / 16, pretrained=True, **TINY_DETECTOR)


def test_pretrained_vgg_needs_7x7_regions():
    with pytest.raises(DetectorConfigError, match="model.roi_output_size=7"):
        build_detector(arch="vgg16", pretrained=True, **{**TINY_DETECTOR, "roi_output_size": 14})


def test_weights_path_without_pretrained_is_refused(tmp_path: Path):
    with pytest.raises(DetectorConfigError, match="model.pretrained=true"):
        build_detector(weights_path=str(tmp_path / "w.pth"), **TINY_DETECTOR)


def test_missing_weights_file(tmp_path: Path):
    missing = tmp_path / "nothing.pth"
    with pytest.raises(UserError, match=f"weights file not found: {missing}"):
        build_detector(width=1.0, pretrained=True, weights_path=str(missing), **TINY_DETECTOR)


def test_weights_of_another_network_are_refused(tmp_path: Path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(UserError, match=f"{path} does not hold the weights"):
        build_detector(width=1.0, pretrained=True, weights_path=str(path), **TINY_DETECTOR)
