import pytest
import torch

from amnesiac.errors import ConfigError, UnknownNameError
from amnesiac.models import MODELS, build_model, count_parameters
from amnesiac.models.resnet import resnet18


@pytest.mark.parametrize("name", ["resnet18", "resnet18-cifar", "small-cnn"])
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (1, 8)])
def test_every_model_runs_on_every_input_shape(name, channels, size):
    net = build_model(name, in_channels=channels, num_classes=7, image_size=size)
    out = net(torch.randn(3, channels, size, size))
    assert out.shape == (3, 7)


def test_resnet18_matches_torchvision_architecture():
    # torchvision's resnet18 (3 channels, 1000 classes) has exactly 11,689,512 parameters
    net = resnet18(in_channels=3, num_classes=1000)
    assert count_parameters(net) == 11_689_512
    names = set(net.state_dict())
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                "layer4.1.bn2.num_batches_tracked", "fc.weight"):
        assert key in names
    assert net.conv1.kernel_size == (7, 7) and net.conv1.stride == (2, 2)
    assert isinstance(net.maxpool, torch.nn.MaxPool2d)


def test_paper_resnet_takes_one_channel():
    net = build_model("resnet18", in_channels=1, num_classes=10, image_size=28)
    assert net.conv1.in_channels == 1 and net.fc.out_features == 10


def test_cifar_stem():
    net = build_model("resnet18-cifar", in_channels=3, num_classes=100, image_size=32)
    assert net.conv1.kernel_size == (3, 3) and isinstance(net.maxpool, torch.nn.Identity)


def test_unknown_model_and_bad_shape():
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet18'"):
        build_model("resnet19", in_channels=1, num_classes=10, image_size=28)
    with pytest.raises(ConfigError, match="in_channels must be a positive integer, got 0"):
        build_model("small-cnn", in_channels=0, num_classes=10, image_size=28)


def test_registry_refuses_silent_overwrite():
    with pytest.raises(ConfigError, match="already registered"):
        MODELS.register("small-cnn", lambda **kw: None)
