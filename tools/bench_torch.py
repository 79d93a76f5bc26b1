#!/usr/bin/python3
"""PyTorch side of tools/bench: images/s of a training step and of evaluation for a network
described by bench_engine's Arch JSON (any node bench_engine prints, any per-conv channel counts,
e.g. a pruned ResNet-20), and the process's peak resident memory.

usage: bench_torch.py ARCH_JSON THREADS REPS
  ->  prints "train_img_s eval_img_s rss_before_net_kib peak_rss_kib"
The network, batch (the JSON's), optimiser (Nesterov SGD, momentum 0.9, wd 5e-4) and the timing
rule (one warm-up, then the median of REPS) match bench_engine's `run`. ReLU, ReLU6 and the first
operand of an add work in place where torchvision's modules do (on a BN's or an add's output that
nothing else reads), so the memory compared is that of the usual PyTorch model.
"""
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ArchNet(nn.Module):
    """Executes the node list in order; each node's output is kept for its consumers."""

    def __init__(self, nodes):
        super().__init__()
        self.nodes = nodes
        self.mods = nn.ModuleDict()
        self.maps = {}
        for i, n in enumerate(nodes):
            p = nodes[n["in"][0]] if n["in"][0] >= 0 else None
            if n["kind"] == "conv":
                self.mods[str(i)] = nn.Conv2d(p["c"], n["c"], n["k"], n["stride"], n["pad"],
                                              groups=n["groups"], bias=n["bias"] != 0)
            elif n["kind"] == "bn":
                self.mods[str(i)] = nn.BatchNorm2d(n["c"])
            elif n["kind"] == "fc":
                self.mods[str(i)] = nn.Linear(p["c"], n["c"])
            elif n["kind"] == "shortcut":
                identity = n["map"] == list(range(len(n["map"])))
                self.maps[i] = None if identity else torch.tensor(n["map"], dtype=torch.long)
        # The last use of every node, so intermediate outputs are dropped as soon as possible.
        self.last_use = {}
        uses = {}
        for i, n in enumerate(nodes):
            for j in n["in"]:
                if j >= 0:
                    self.last_use[j] = i
                    uses[j] = uses.get(j, 0) + 1
        # Nodes that may overwrite their first input: an activation or add whose first input is
        # a BN or add read by nothing else (BN and add keep no output for their backward).
        self.inplace = {i for i, n in enumerate(nodes)
                        if n["kind"] in ("relu", "relu6", "add") and uses[n["in"][0]] == 1
                        and nodes[n["in"][0]]["kind"] in ("bn", "add")}

    def forward(self, x):
        outs = {}
        for i, n in enumerate(self.nodes):
            k = n["kind"]
            a = outs.get(n["in"][0])
            if k == "input":
                y = x
            elif k in ("conv", "bn", "fc"):
                y = self.mods[str(i)](a)
            elif k == "relu":
                y = F.relu(a, inplace=i in self.inplace)
            elif k == "relu6":
                y = F.relu6(a, inplace=i in self.inplace)
            elif k == "add":
                b = outs[n["in"][1]]
                y = a.add_(b) if i in self.inplace else a + b
            elif k == "maxpool":
                y = F.max_pool2d(a, n["k"], n["stride"], n["pad"])
            elif k == "dropout":
                y = F.dropout(a, n["drop_p"], self.training)
            elif k == "shortcut":
                s = n["stride"]
                a = a[:, :, ::s, ::s] if s > 1 else a
                pad = n["c"] - a.shape[1]
                if self.maps[i] is None:
                    y = F.pad(a, (0, 0, 0, 0, 0, pad)) if pad > 0 else a
                else:
                    y = a.new_zeros(a.shape[0], n["c"], a.shape[2], a.shape[3])
                    y.index_copy_(1, self.maps[i], a)
            elif k == "gap":
                y = F.adaptive_avg_pool2d(a, 1).flatten(1)
            else:
                raise ValueError("unknown node kind " + k)
            outs[i] = y
            for j in n["in"]:
                if j >= 0 and self.last_use.get(j) == i:
                    del outs[j]
        return y


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        arch = json.load(f)
    threads, reps = int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    nodes = arch["nodes"]
    net = ArchNet(nodes)
    inp = nodes[0]
    batch = arch["batch"]
    x = torch.rand(batch, inp["c"], inp["h"], inp["w"]) * 2 - 1
    y = torch.arange(batch) % nodes[-1]["c"]
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4,
                          nesterov=True)
    net.train()
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    t_train = statistics.median(times[1:])
    net.eval()
    times = []
    with torch.no_grad():
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    t_eval = statistics.median(times[1:])
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("%.2f %.2f %d %d" % (batch / t_train, batch / t_eval, rss_before, rss_peak))


if __name__ == "__main__":
    main()
