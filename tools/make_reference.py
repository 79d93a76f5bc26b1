#!/usr/bin/python3
"""Write the PyTorch reference fixture that tests/test_reference.c compares the C engine against.

Regenerate (from the repository root, with Debian's interpreter, which sees python3-torch 1.13
and python3-h5py):

    /usr/bin/python3 tools/make_reference.py tests/data/reference_resnet8.h5

The network is the CIFAR ResNet-8 that arch_resnet_cifar(depth 8, in_c 3, 8x8 input, 10 classes,
width 1.0) builds (src/nn/arch.c): stem conv3x3 (no bias) - BN - ReLU; one post-activation
BasicBlock per stage (conv-BN-ReLU-conv-BN, add the option-A shortcut, ReLU) with widths
16/32/64 and stride 2 at the start of stages 2 and 3; global average pooling; Linear with bias.
Module names give the same state_dict keys as the C net's ParamSpec names.

The weights are random from a fixed torch seed (not the default init: BN gamma/beta and the
running statistics are perturbed too, so that every term of every formula matters). Everything
runs in float32 on one thread.

File layout (every tensor in PyTorch's layout, float32 unless noted):
  attributes   depth, in_c, in_h, in_w, num_classes, batch, n_steps (int); lr, momentum,
               weight_decay, bn_momentum, bn_eps (double); nesterov (int)
  inputs       (S, N, C, H, W) one batch per SGD step; batch 0 is the one of the checks below
  labels       (S, N) int32
  params/<key> buffers/<key>      initial parameters and BN running mean/var
  logits (N, classes), loss ()    train-mode forward of batch 0 with the initial weights
  grads/<key>                     gradient of the mean cross-entropy of that forward
  buffers_fwd/<key>               running statistics after that single forward
  step_loss (S,)                  mean loss of the train-mode forward of step s (forward batch s,
                                  backward, torch.optim.SGD step); step 0's is the check above
  params_after/<key> buffers_after/<key>   state after the S steps
  eval_logits (N, classes)        eval-mode forward of batch 0 after the steps
"""
import copy
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DEPTH, IN_C, IN_H, IN_W, CLASSES = 8, 3, 8, 8, 10
BATCH, STEPS = 8, 3
LR, MOMENTUM, WD, NESTEROV = 0.05, 0.9, 5e-4, True
SEED = 20240611


class ShortcutA(nn.Module):
    """Option A: subsample by the stride, zero-pad channels at the end (channel i -> i)."""

    def __init__(self, out_c, stride):
        super().__init__()
        self.out_c, self.stride = out_c, stride

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_c - x.shape[1]))


class BasicBlock(nn.Module):
    def __init__(self, in_c, out_c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, out_c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_c)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c)
        self.shortcut = ShortcutA(out_c, stride) if stride != 1 or in_c != out_c else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class ResNetCifar(nn.Module):
    def __init__(self, depth, in_c, classes):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_c, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        c = 16
        for s, width in enumerate((16, 32, 64)):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(c, width, 2 if s > 0 and b == 0 else 1))
                c = width
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def randomise(model, gen):
    """Kaiming-normal conv/FC weights, perturbed BN affine and running stats, random FC bias."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            shape = t.shape
            if name.endswith("weight") and t.dim() > 1:
                fan_in = t[0].numel()
                t.copy_(torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif name.startswith("fc."):
                t.copy_(0.1 * torch.randn(shape, generator=gen))
            elif name.endswith("weight"):  # BN gamma
                t.copy_(1.0 + 0.2 * torch.randn(shape, generator=gen))
            elif name.endswith("bias"):  # BN beta
                t.copy_(0.1 * torch.randn(shape, generator=gen))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(shape, generator=gen))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(shape, generator=gen))


def write_state(group, tensors):
    """One float32 dataset per tensor; the large ones compressed (keeps the fixture < 1 MB)."""
    for key, t in tensors:
        a = t.detach().cpu().numpy().astype(np.float32)
        if a.size >= 4096:
            group.create_dataset(key, data=a, chunks=a.shape, compression="gzip",
                                 compression_opts=9, shuffle=True)
        else:
            group.create_dataset(key, data=a)


def buffers_of(model):
    return [(k, v.detach().clone()) for k, v in model.named_buffers()
            if not k.endswith("num_batches_tracked")]


def run(model, inputs, labels):
    """S SGD steps in train mode; the forward/backward of step 0 (batch 0, initial weights) is
    also the one whose logits, loss, gradients and running stats are checked. Returns every
    tensor of the fixture's results as name -> numpy array."""
    out = {}
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD,
                          nesterov=NESTEROV)
    step_loss = []
    for s in range(STEPS):
        opt.zero_grad()
        logits = model(inputs[s])
        loss = F.cross_entropy(logits, labels[s])
        loss.backward()
        if s == 0:
            out["logits"] = logits.detach().numpy()
            out["loss"] = np.array(loss.item())
            out.update(("grads/" + k, p.grad.numpy().copy()) for k, p in model.named_parameters())
            out.update(("buffers_fwd/" + k, v.numpy()) for k, v in buffers_of(model))
        opt.step()
        step_loss.append(loss.item())
    out["step_loss"] = np.array(step_loss)
    out.update(("params_after/" + k, p.detach().numpy().copy())
               for k, p in model.named_parameters())
    out.update(("buffers_after/" + k, v.numpy()) for k, v in buffers_of(model))
    model.eval()
    with torch.no_grad():
        out["eval_logits"] = model(inputs[0]).numpy()
    return out


def rel_err(a, ref):
    """The metric of tests/test_reference.c: max |a-ref| / max(|ref|, 1e-3 * max|ref|)."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    floor = max(1e-3 * np.abs(ref).max(), 1e-30)
    return float((np.abs(a - ref) / np.maximum(np.abs(ref), floor)).max())


def main(path):
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = ResNetCifar(DEPTH, IN_C, CLASSES).float()
    randomise(model, gen)
    inputs = torch.randn(STEPS, BATCH, IN_C, IN_H, IN_W, generator=gen)
    labels = torch.randint(0, CLASSES, (STEPS, BATCH), generator=gen)
    model64 = copy.deepcopy(model).double()

    with h5py.File(path, "w") as f:
        for k, v in (("depth", DEPTH), ("in_c", IN_C), ("in_h", IN_H), ("in_w", IN_W),
                     ("num_classes", CLASSES), ("batch", BATCH), ("n_steps", STEPS),
                     ("nesterov", int(NESTEROV))):
            f.attrs.create(k, v, dtype=np.int32)
        for k, v in (("lr", LR), ("momentum", MOMENTUM), ("weight_decay", WD),
                     ("bn_momentum", 0.1), ("bn_eps", 1e-5)):
            f.attrs.create(k, v, dtype=np.float64)
        f.create_dataset("inputs", data=inputs.numpy().astype(np.float32))
        f.create_dataset("labels", data=labels.numpy().astype(np.int32))
        write_state(f.create_group("params"), model.named_parameters())
        write_state(f.create_group("buffers"), buffers_of(model))
        res = run(model, inputs, labels)
        for key, a in res.items():
            write_state(f.require_group(key.rpartition("/")[0] or "/"),
                        [(key.rpartition("/")[2], torch.from_numpy(np.asarray(a)))])

    # How far float32 PyTorch itself is from the same computation in float64: the noise level
    # that justifies the tolerances of tests/test_reference.c.
    res64 = run(model64, inputs.double(), labels)
    worst = {}
    for key, a in res.items():
        kind = key.partition("/")[0] if "/" in key else key
        worst[kind] = max(worst.get(kind, 0.0), rel_err(a, res64[key]))
    print("wrote %s; float32 PyTorch vs float64, max relative error per kind:" % path)
    for kind, e in worst.items():
        print("  %-14s %.3g" % (kind, e))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: /usr/bin/python3 tools/make_reference.py OUT.h5")
    main(sys.argv[1])
