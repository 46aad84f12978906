import numpy as np
import pytest
import torch
from clf_factory import toy_images

from cxrlab.clf.models import (
    ModelSpec,
    build_classifier,
    imagenet_weights_file,
    pretrained_weights,
)
from cxrlab.errors import CxrlabError
from cxrlab.metrics.extractors.weights import MissingWeightsError


@pytest.mark.parametrize("arch", ["simple-cnn", "resnet18", "densenet121-xrv"])
@pytest.mark.parametrize("head", ["logit", "softmax"])
def test_every_arch_maps_grey_images_to_logits_and_probabilities(arch, head):
    torch.manual_seed(0)
    # train mode: BatchNorm uses batch statistics (fresh running statistics know nothing of
    # torchxrayvision's [-1024, 1024] inputs)
    model = build_classifier(ModelSpec(arch, size_px=32, head=head, pretrained="none")).train()
    images = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (3, 1 if head == "logit" else 2)
    probability = model.covid_probability(logits)
    assert probability.shape == (3,) and ((probability > 0) & (probability < 1)).all()
    # The thesis' bug: a softmax over one neuron is always 1. Outputs must depend on the input.
    assert probability.std() > 0
    loss = model.loss(logits, torch.tensor([0, 1, 1]))
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_grey_input_handling_and_normalisation_match_the_backbone():
    scratch = build_classifier(ModelSpec("resnet18", 32, pretrained="none"))
    assert scratch.backbone[0].in_channels == 1 and scratch.normalize == "imagenet"
    xrv = build_classifier(ModelSpec("densenet121-xrv", 32, pretrained="none"))
    prepared = xrv.prepare(torch.ones(1, 1, 32, 32))
    assert prepared.shape == (1, 1, 32, 32) and prepared.max() == pytest.approx(1024)
    cnn = build_classifier(ModelSpec("simple-cnn", 32))
    assert cnn.prepare(torch.full((1, 1, 32, 32), 0.5)).mean() == pytest.approx(0.5)
    filters = [m.out_channels for m in cnn.backbone if isinstance(m, torch.nn.Conv2d)]
    assert filters == [128, 64, 32, 32]
    dense = [m.out_features for m in cnn.head if isinstance(m, torch.nn.Linear)]
    assert dense == [128, 1]


def test_simple_cnn_loss_falls_on_a_separable_toy_set():
    torch.manual_seed(0)
    labels = np.tile([0, 1], 8)
    images = torch.from_numpy(toy_images(labels, 16).astype(np.float32) / 255)[:, None]
    targets = torch.from_numpy(labels)
    model = build_classifier(ModelSpec("simple-cnn", 16))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = model.loss(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.6  # chance: log 2
    assert np.mean(losses[-5:]) < 0.25 * losses[0]
    with torch.no_grad():
        predicted = (model.covid_probability(model(images)) >= 0.5).long()
    assert (predicted == targets).float().mean() == 1.0


def test_missing_imagenet_weights_are_a_clear_offline_error():
    with pytest.raises(MissingWeightsError) as caught:
        build_classifier(ModelSpec("resnet18", 32, pretrained="imagenet"))
    message = str(caught.value)
    assert imagenet_weights_file().url in message
    assert "--pretrained /path/to/resnet18-" in message and "--pretrained none" in message


def test_pretrained_name_must_fit_the_arch_and_files_must_exist(tmp_path):
    with pytest.raises(CxrlabError, match="does not fit"):
        pretrained_weights("resnet18", "xrv")
    with pytest.raises(MissingWeightsError, match="no such file"):
        pretrained_weights("resnet18", str(tmp_path / "nowhere.pth"))
    with pytest.raises(CxrlabError, match="no pretrained weights"):
        build_classifier(ModelSpec("simple-cnn", 32, pretrained="imagenet"))


def test_imagenet_weights_from_a_local_file_or_the_cache(tmp_path, offline_machine):
    from torchvision.models import resnet18

    torch.manual_seed(5)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_classifier(ModelSpec("resnet18", 32, pretrained=str(path)))
    assert torch.equal(model.backbone[0].weight, reference.conv1.weight)  # 3-channel, as trained
    assert torch.equal(model.backbone[4][0].conv1.weight, reference.layer1[0].conv1.weight)
    assert model.normalize == "imagenet-rgb" and model.head[-1].out_features == 1
    # a grey image becomes three identical channels, each with ImageNet's own statistics
    prepared = model.prepare(torch.full((1, 1, 4, 4), 0.5))
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(prepared[0, :, 0, 0], expected)
    # the same file found in torch.hub's cache by --pretrained imagenet, no download
    cache = offline_machine / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / imagenet_weights_file().filename).write_bytes(path.read_bytes())
    cached = build_classifier(ModelSpec("resnet18", 32, pretrained="imagenet"))
    assert torch.equal(cached.backbone[0].weight, reference.conv1.weight)


def test_foreign_weight_files_are_refused_with_the_file_named(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"something": torch.zeros(3)}, path)
    with pytest.raises(CxrlabError, match="other.pth"):
        build_classifier(ModelSpec("resnet18", 32, pretrained=str(path)))


def test_xrv_weights_from_a_local_file_resize_to_224(tmp_path):
    import torchxrayvision as xrv

    torch.manual_seed(6)
    reference = xrv.models.DenseNet(weights=None)
    path = tmp_path / "xrv.pt"
    torch.save(reference.state_dict(), path)
    model = build_classifier(ModelSpec("densenet121-xrv", 64, pretrained=str(path)))
    first = model.backbone[0][0]
    assert torch.equal(first.weight, reference.features[0].weight)
    assert model.prepare(torch.rand(1, 1, 64, 64)).shape == (1, 1, 224, 224)


def test_freezing_trains_the_head_only():
    torch.manual_seed(0)
    model = build_classifier(ModelSpec("resnet18", 32))
    model.freeze_backbone()
    model.train()
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model.loss(model(torch.rand(4, 1, 32, 32)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    optimizer.step()
    for key, value in model.backbone.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(value, backbone[key]), key
    assert any(not torch.equal(v, head[k]) for k, v in model.head.state_dict().items())


@pytest.mark.parametrize("arch", ["resnet18", "simple-cnn"])
def test_a_frozen_backbone_folds_its_batchnorms_and_follows_new_weights(arch):
    """Without autograd a frozen backbone runs with BatchNorm folded into the convolutions:
    the same maps as the backbone as it is; loading other weights rebuilds the folded copy."""
    from cxrlab.clf.models import ModelSpec, build_classifier

    torch.manual_seed(0)
    spec = ModelSpec(arch=arch, size_px=32, head="logit", pretrained="none")
    model, other = build_classifier(spec), build_classifier(spec)
    for module in other.modules():  # BatchNorm statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.freeze_backbone()
    images = torch.rand(3, 1, 32, 32)

    def reference(m):
        with torch.enable_grad():
            return m.backbone(m.prepare(images)).detach()

    with torch.no_grad():
        folded = model.features(images)
    torch.testing.assert_close(folded, reference(model), rtol=1e-4, atol=1e-5)
    if arch == "resnet18":
        batchnorms = [
            m for m in model._inference_backbone().modules() if isinstance(m, torch.nn.BatchNorm2d)
        ]
        assert batchnorms == []  # folded, not just copied
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        refolded = model.features(images)
    torch.testing.assert_close(refolded, reference(model), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(refolded, folded)
