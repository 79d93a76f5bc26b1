#!/usr/bin/python3
"""Convert a PyTorch CNN (a torchvision model or a class in a Python file) into a legr-model HDF5
file that legr-mpi can load, prune and fine-tune (model.arch = "file").

usage:
  torch_to_legr.py torchvision:NAME -o OUT.h5 [--classes N] [--input C,H,W] [--weights SD.pt]
  torch_to_legr.py FILE.py:CLASS    -o OUT.h5 --input C,H,W [--classes N] [--weights SD.pt]

torchvision:NAME builds torchvision.models.NAME(weights=None) (with num_classes=N when --classes
is given; nothing is downloaded); the input defaults to 3,224,224. FILE.py:CLASS imports FILE.py
and builds CLASS() with no arguments; --input is required and --classes, when given, must equal
the network's output width. --weights loads a state_dict saved with torch.save (a dict of
tensors, or a checkpoint dict holding one under "state_dict" or "model"; a "module." prefix from
DataParallel is removed); without it the model's own random initialisation is written (seeded by
--seed).

The module is traced with torch.fx (symbolic_trace) and its shapes propagated on a zero image
(ShapeProp); every operation must map onto a legr-model node kind (docs/FORMAT.md):

  nn.Conv2d                            conv (any groups, optional bias; square kernel, stride and
                                       padding, dilation 1, zero padding)
  nn.BatchNorm2d                       bn (affine, tracking running statistics, eps 1e-5)
  nn.ReLU, F.relu, torch.relu          relu              (in-place forms too)
  nn.ReLU6, F.relu6, hardtanh(0, 6)    relu6
  a + b, torch.add, +=  (two tensors)  add (the plain sum; a ReLU after it is a node of its own)
  nn.MaxPool2d, F.max_pool2d           maxpool (square, dilation 1, floor mode)
  nn.AdaptiveAvgPool2d(1),
  F.adaptive_avg_pool2d(x, 1),
  x.mean((2, 3))                       gap
  nn.Dropout, F.dropout                dropout (its p; the identity in evaluation)
  nn.Linear                            fc: the last layer, after a gap (through flatten/dropout)
  flatten, view, reshape of a 1x1 map,
  nn.Identity, .contiguous()           nothing (the identity)

Anything else (nn.Sigmoid, torch.cat, a 3x1 kernel, a shared layer, ...) is refused with a
message naming the module and the operation. Node names are the module names (PyTorch's
state_dict names); additions and functional calls are named after the module whose forward
makes them ("layer1.0.add"), repeated calls of one parameter-free module get "_1", "_2", ....

The file is written as legr-mpi writes its own: OUT.h5.tmp, then renamed over OUT.h5. Its
flops (multiply-accumulates of conv + fc) and params attributes are computed as legr-mpi does.

Exit codes: 0 written; 1 internal error or the file cannot be written; 2 usage error or a network
legr-model cannot express; 3 an input file (FILE.py, the weights) is missing or unusable.

Needs only Debian's python3-torch, python3-torchvision (for torchvision:NAME) and python3-h5py
(run it with /usr/bin/python3).
"""
import argparse
import builtins
import contextlib
import importlib.util
import io
import operator
import os
import re
import sys

import h5py
import numpy as np

EXIT_INTERNAL, EXIT_USAGE, EXIT_DATA = 1, 2, 3
BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # legr-mpi's BatchNorm constants
NAME_MAX = 47  # ARCH_NAME_MAX (48) minus the terminating NUL
KIND_MAX = 15

try:
    import torch
    import torch.fx
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.fx.passes.shape_prop import ShapeProp
except ImportError as e:  # a clear message instead of a traceback on the wrong interpreter
    sys.stderr.write("torch_to_legr: error: %s; run this tool with /usr/bin/python3, which sees "
                     "Debian's python3-torch\n" % e)
    sys.exit(EXIT_USAGE)


class UsageError(Exception):
    """Bad command line (exit code 2)."""


class Unsupported(Exception):
    """The network uses something legr-model cannot express (exit code 2)."""


class DataError(Exception):
    """An input file is missing or unusable (exit code 3)."""


def progress(msg):
    print("torch_to_legr: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Building the PyTorch module.

def parse_input(text):
    try:
        dims = [int(v) for v in text.split(",")]
    except ValueError:
        dims = []
    if len(dims) != 3 or min(dims) <= 0:
        raise UsageError("--input %r: give three positive integers C,H,W, e.g. 3,32,32" % text)
    return tuple(dims)


def build_torchvision(name, classes):
    try:
        import torchvision.models as tvm
    except ImportError as e:
        raise UsageError("torchvision:%s needs python3-torchvision: %s" % (name, e))
    known = tvm.list_models(module=tvm) if hasattr(tvm, "list_models") else []
    fn = getattr(tvm, name, None)
    if (known and name not in known) or not callable(fn) or isinstance(fn, type):
        sample = [k for k in known if re.match(r"(resnet|mobilenet)", k)]
        raise UsageError("torchvision has no classification model %r (for example: %s)"
                         % (name, ", ".join(sample[:10])))
    kwargs = {"weights": None}
    if classes is not None:
        kwargs["num_classes"] = classes
    try:
        return fn(**kwargs)
    except Exception as e:  # a builder rejecting its arguments
        raise UsageError("torchvision.models.%s(%s) failed: %s" % (
            name, ", ".join("%s=%r" % kv for kv in kwargs.items()), e))


def build_from_file(path, cls):
    if not os.path.isfile(path):
        raise DataError("%s: no such file (MODEL is FILE.py:CLASS)" % path)
    modname = "legr_user_model_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise DataError("%s: cannot be imported as a Python module" % path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    # Imports beside the file (helper modules of the network) resolve as when run from there.
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise DataError("%s: importing it failed: %s: %s" % (path, type(e).__name__, e))
    target = getattr(module, cls, None)
    if target is None:
        raise UsageError("%s defines no %r" % (path, cls))
    try:
        model = target()
    except Exception as e:
        raise DataError("%s: %s() failed: %s: %s" % (path, cls, type(e).__name__, e))
    if not isinstance(model, nn.Module):
        raise UsageError("%s: %s() is a %s, not a torch.nn.Module" % (path, cls,
                         type(model).__name__))
    return model


def build_model(spec, classes):
    """(module, description) for a MODEL argument."""
    if spec.startswith("torchvision:"):
        name = spec[len("torchvision:"):]
        desc = "torchvision:%s" % name + ("" if classes is None else " (num_classes=%d)" % classes)
        return build_torchvision(name, classes), desc
    path, sep, cls = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not cls.isidentifier():
        raise UsageError("MODEL %r: give torchvision:NAME (e.g. torchvision:resnet18) or "
                         "FILE.py:CLASS" % spec)
    return build_from_file(path, cls), spec


def read_state_dict(path):
    if not os.path.isfile(path):
        raise DataError("%s: no such weights file" % path)
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:
        raise DataError("%s: torch.load failed: %s" % (path, e))
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or \
            not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise DataError("%s: holds no state_dict (a dict of tensors)" % path)
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_weights(model, path):
    sd = read_state_dict(path)
    want = model.state_dict()
    missing = [k for k in want if k not in sd and not k.endswith("num_batches_tracked")]
    extra = [k for k in sd if k not in want]
    wrong = ["%s %s (the model has %s)" % (k, tuple(sd[k].shape), tuple(want[k].shape))
             for k in want if k in sd and sd[k].shape != want[k].shape]
    if missing or extra or wrong:
        raise DataError("%s does not fit the model: %s" % (path, "; ".join(
            s for s in ("missing %s" % ", ".join(missing[:4]) if missing else "",
                        "unexpected %s" % ", ".join(extra[:4]) if extra else "",
                        "shape %s" % ", ".join(wrong[:3]) if wrong else "") if s)))
    model.load_state_dict(sd, strict=False)


# ---------------------------------------------------------------------------------------------
# Tracing.

class ScopeTracer(torch.fx.Tracer):
    """symbolic_trace's tracer that also records, in node.meta["legr_scope"], the qualified name
    of the module whose forward created the node ("" for the top-level forward)."""

    def __init__(self):
        super().__init__()
        self.scope = [""]

    def call_module(self, m, forward, args, kwargs):
        try:
            name = self.path_of_module(m)
        except NameError:
            name = self.scope[-1]
        self.scope.append(name)
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self.scope.pop()

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        node.meta["legr_scope"] = self.scope[-1]
        return node


def trace(model, shape, desc):
    """The traced GraphModule with node.meta["tensor_meta"] from a (1, C, H, W) zero input."""
    tracer = ScopeTracer()
    try:
        graph = tracer.trace(model)
    except Exception as e:
        raise Unsupported("torch.fx cannot trace the model's forward: %s: %s\n  (branches on "
                          "tensor values, unpacking a Proxy's size, or a call fx cannot "
                          "record; see torch.fx's limitations)"
                          % (type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
    gm = torch.fx.GraphModule(tracer.root, graph)
    prop = TrackingShapeProp(gm)
    try:
        # ShapeProp prints the traceback of a failing node; the message below says it shorter.
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            prop.propagate(torch.zeros(1, *shape))
    except Exception as e:
        cause = e.__cause__ or e.__context__ or e  # ShapeProp re-raises a RuntimeError
        raise Unsupported("the model does not run on a 1x%dx%dx%d input: at %s: %s: %s" % (
            shape + (describe(gm, prop.current, desc) if prop.current is not None else "?",
                     type(cause).__name__, str(cause).splitlines()[0] if str(cause) else "")))
    return gm


class TrackingShapeProp(ShapeProp):
    """ShapeProp that remembers the node it is running (to name it when it fails)."""

    current = None

    def run_node(self, n):
        self.current = n
        return super().run_node(n)


# ---------------------------------------------------------------------------------------------
# Mapping fx nodes onto legr-model nodes.

def pair(v, what):
    """A square size (int or 2-tuple of equal ints) as one int."""
    if isinstance(v, int):
        return v
    if isinstance(v, (tuple, list)) and len(v) == 2 and v[0] == v[1] and isinstance(v[0], int):
        return v[0]
    if isinstance(v, (tuple, list)) and len(v) == 1 and isinstance(v[0], int):
        return v[0]
    raise ValueError("%s %s is not square" % (what, "x".join(str(x) for x in v)
                                               if isinstance(v, (tuple, list)) else repr(v)))


def tensor_shape(node):
    tm = node.meta.get("tensor_meta")
    return tuple(tm.shape) if tm is not None and hasattr(tm, "shape") else None


def qualname(obj):
    """A readable name of a module class or function: torch.nn.Sigmoid, torch.cat, F.gelu."""
    mod = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    if mod == "torch" and getattr(torch, getattr(obj, "__name__", ""), None) is obj:
        name = obj.__name__  # torch.cat's __qualname__ is _VariableFunctionsClass.cat
    if mod.startswith("torch.nn.modules"):
        mod = "torch.nn"
    elif mod == "torch.nn.functional":
        mod = "F"
    elif mod in ("_operator", "operator"):
        mod = "operator"
    return "%s.%s" % (mod, name) if mod and mod != "builtins" else name


def describe(gm, n, model_desc):
    """How an error names fx node n: the module (qualified name) and the operation."""
    if n.op == "call_module":
        m = gm.get_submodule(n.target)
        return "module '%s' (%s)" % (n.target, qualname(type(m)))
    scope = n.meta.get("legr_scope", "")
    where = "module '%s'" % scope if scope else "the top-level forward of %s" % model_desc
    if n.op == "call_function":
        op = qualname(n.target)
    elif n.op == "call_method":
        op = "Tensor.%s" % n.target
    elif n.op == "get_attr":
        op = "the attribute '%s'" % n.target
    else:
        op = n.op
    return "%s in %s (fx node '%s')" % (op, where, n.name)


# Functions and methods by their role. Functions are compared by identity.
RELU_FUNCS = {F.relu, torch.relu, torch.relu_, getattr(F, "relu_", F.relu)}
RELU6_FUNCS = {F.relu6}
HARDTANH_FUNCS = {F.hardtanh, getattr(F, "hardtanh_", F.hardtanh)}
ADD_FUNCS = {operator.add, operator.iadd, torch.add}
FLATTEN_FUNCS = {torch.flatten, torch.reshape}
MEAN_FUNCS = {torch.mean}
INPLACE_FUNCS = {torch.relu_, operator.iadd, getattr(F, "relu_", None),
                 getattr(F, "hardtanh_", None)}
SHAPE_METHODS = {"size", "dim"}
RESHAPE_METHODS = {"view", "reshape", "flatten"}


class Converter:
    def __init__(self, gm, model_desc, state):
        self.gm = gm
        self.desc = model_desc
        self.nodes = []       # legr-model rows (dicts), in topological order
        self.tensors = []     # (group, stored name, state_dict key)
        self.names = set()
        self.env = {}         # fx node -> legr node index (tensors) or None (sizes)
        self.calls = {}       # module target -> how often it has been called
        self.state = state    # the model's state_dict (unused layers included)
        # Names of the layers with tensors are their state_dict prefixes: no generated name may
        # take one.
        self.reserved = {n.target for n in gm.graph.nodes if n.op == "call_module" and
                         len(gm.get_submodule(n.target).state_dict()) > 0}
        self.used_keys = set()

    # -- helpers --------------------------------------------------------------------------

    def where(self, n):
        return describe(self.gm, n, self.desc)

    def refuse(self, n, why):
        raise Unsupported("%s: %s" % (self.where(n), why))

    def arg(self, n, value, what="input"):
        """The legr node index of a tensor argument."""
        if not isinstance(value, torch.fx.Node):
            self.refuse(n, "its %s is the constant %r; legr-model nodes take tensors computed by "
                        "the network" % (what, value))
        if value.op == "get_attr":
            self.refuse(n, "its %s is the stored tensor '%s'; only layers' own weights are "
                        "supported" % (what, value.target))
        idx = self.env.get(value)
        if idx is None:
            self.refuse(n, "its %s '%s' is not a tensor of the network" % (what, value.name))
        return idx

    def unique_name(self, base):
        name, k = base, 0
        while name in self.names or name in self.reserved:
            k += 1
            name = "%s_%d" % (base, k)
        return name

    def node_name(self, n, kind, has_tensors):
        if n.op == "call_module":
            count = self.calls.get(n.target, 0)
            self.calls[n.target] = count + 1
            if count and has_tensors:
                self.refuse(n, "the layer is called %d times (shared weights); a legr-model "
                            "network stores every layer once" % (count + 1))
            base = n.target if not count else "%s_%d" % (n.target, count)
        else:
            scope = n.meta.get("legr_scope", "")
            base = "%s.%s" % (scope, kind) if scope else kind
        if has_tensors:
            if base in self.names:
                self.refuse(n, "its name '%s' is already the name of another node" % base)
            name = base
        else:
            name = self.unique_name(base)
        if "/" in name:
            self.refuse(n, "the name '%s' contains '/', which HDF5 reads as a group separator"
                        % name)
        if len(name.encode()) > NAME_MAX:
            if has_tensors:
                self.refuse(n, "the layer name '%s' is %d bytes long; legr-model stores at "
                            "most %d (rename the module)" % (name, len(name.encode()), NAME_MAX))
            name = self.unique_name("%s.%d" % (kind, len(self.nodes)))
        self.names.add(name)
        return name

    def add_node(self, n, kind, in0=-1, in1=-1, c=0, h=0, w=0, k=0, stride=1, pad=0, groups=1,
                 bias=0, drop_p=0.0, tensors=()):
        """Append a legr node for fx node n (the unused fields as legr-mpi's arch_add_*
        leave them) after checking its (c, h, w) against the shape ShapeProp recorded."""
        name = self.node_name(n, kind, bool(tensors))
        got = tensor_shape(n)
        want4, want2 = (1, c, h, w), (1, c)
        if got != want4 and not (h == 1 and w == 1 and got == want2):
            self.refuse(n, "PyTorch gives it the shape %s, the legr-model %s node would have "
                        "(1, %d, %d, %d)" % (got, kind, c, h, w))
        for group, suffix in tensors:
            key = n.target + suffix
            if key not in self.state:
                raise RuntimeError("state_dict has no %s" % key)
            self.used_keys.add(key)
            self.tensors.append((group, name + suffix, key))
        self.nodes.append(dict(name=name, kind=kind, in0=in0, in1=in1, c=c, h=h, w=w, k=k,
                               stride=stride, pad=pad, groups=groups, bias=bias, drop_p=drop_p))
        return len(self.nodes) - 1

    def shape_of(self, idx):
        r = self.nodes[idx]
        return r["c"], r["h"], r["w"]

    def input_of_module_call(self, n):
        if len(n.args) != 1 or n.kwargs:
            self.refuse(n, "called with %d arguments%s; expected one tensor" % (
                len(n.args), " and keywords %s" % sorted(n.kwargs) if n.kwargs else ""))
        return self.arg(n, n.args[0])

    @staticmethod
    def fn_args(n, names, defaults):
        """Positional and keyword arguments of a call as a dict over names (after the input)."""
        vals = dict(defaults)
        for name, v in zip(names, n.args[1:]):
            vals[name] = v
        vals.update(n.kwargs)
        return vals

    # -- node kinds -----------------------------------------------------------------------

    def conv(self, n, m, x):
        c, h, w = self.shape_of(x)
        try:
            k = pair(m.kernel_size, "kernel")
            s = pair(m.stride, "stride")
            if isinstance(m.padding, str):
                if m.padding == "valid":
                    p = 0
                elif m.padding == "same" and k % 2 == 1 and s == 1:
                    p = k // 2
                else:
                    raise ValueError("padding=%r with an even kernel or a stride" % m.padding)
            else:
                p = pair(m.padding, "padding")
            if pair(m.dilation, "dilation") != 1:
                raise ValueError("dilation %s is not 1" % (m.dilation,))
        except ValueError as e:
            self.refuse(n, "%s; legr-model convolutions are square with dilation 1" % e)
        if m.padding_mode != "zeros":
            self.refuse(n, "padding_mode %r; legr-model pads with zeros" % m.padding_mode)
        if m.in_channels != c:
            self.refuse(n, "takes %d channels but its input has %d" % (m.in_channels, c))
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        has_bias = m.bias is not None
        tensors = [("params", ".weight")] + ([("params", ".bias")] if has_bias else [])
        return self.add_node(n, "conv", x, c=m.out_channels, h=oh, w=ow, k=k, stride=s, pad=p,
                             groups=m.groups, bias=int(has_bias), tensors=tensors)

    def bn(self, n, m, x):
        c, h, w = self.shape_of(x)
        if not m.affine or not m.track_running_stats:
            self.refuse(n, "affine=%s, track_running_stats=%s; legr-model's BatchNorm has both"
                        % (m.affine, m.track_running_stats))
        if abs(m.eps - BN_EPS) > 1e-12:
            self.refuse(n, "eps=%g; legr-mpi's BatchNorm uses eps=1e-5, so the network would "
                        "compute something else" % m.eps)
        if m.momentum != BN_MOMENTUM:
            progress("note: %s has momentum %s; legr-mpi trains with 0.1 (evaluation is "
                     "unaffected)" % (n.target, m.momentum))
        return self.add_node(n, "bn", x, c=c, h=h, w=w,
                             tensors=[("params", ".weight"), ("params", ".bias"),
                                      ("buffers", ".running_mean"), ("buffers", ".running_var")])

    def simple(self, n, kind, x):
        c, h, w = self.shape_of(x)
        return self.add_node(n, kind, x, c=c, h=h, w=w)

    def maxpool(self, n, x, kernel, stride, padding, dilation, ceil_mode, return_indices):
        c, h, w = self.shape_of(x)
        try:
            k = pair(kernel, "kernel")
            s = k if stride is None or stride == [] or stride == () else pair(stride, "stride")
            p = pair(padding, "padding")
            if pair(dilation, "dilation") != 1:
                raise ValueError("dilation %s is not 1" % (dilation,))
        except ValueError as e:
            self.refuse(n, "%s; legr-model max pooling is square with dilation 1" % e)
        if ceil_mode or return_indices:
            self.refuse(n, "ceil_mode=%s, return_indices=%s; legr-model max pooling is floor "
                        "mode without indices" % (ceil_mode, return_indices))
        if 2 * p > k:
            self.refuse(n, "padding %d is more than half the kernel %d" % (p, k))
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        return self.add_node(n, "maxpool", x, c=c, h=oh, w=ow, k=k, stride=s, pad=p, groups=1)

    def gap(self, n, x):
        c, _, _ = self.shape_of(x)
        return self.add_node(n, "gap", x, c=c, h=1, w=1)

    def dropout(self, n, x, p):
        if not isinstance(p, (int, float)) or not 0 <= p < 1:
            self.refuse(n, "dropout probability %r is not a number in [0, 1)" % (p,))
        c, h, w = self.shape_of(x)
        return self.add_node(n, "dropout", x, c=c, h=h, w=w, drop_p=float(p))

    def add(self, n, a, b):
        if self.shape_of(a) != self.shape_of(b):
            self.refuse(n, "adds tensors of shapes %s and %s; legr-model adds equal shapes only "
                        "(no broadcasting)" % (self.shape_of(a), self.shape_of(b)))
        c, h, w = self.shape_of(a)
        return self.add_node(n, "add", a, b, c=c, h=h, w=w)

    def fc(self, n, m, x):
        j = x
        while self.nodes[j]["kind"] == "dropout":
            j = self.nodes[j]["in0"]
        if self.nodes[j]["kind"] != "gap":
            self.refuse(n, "its input comes from a %s node ('%s'); a legr-model Linear layer "
                        "reads a global average pooling (through flatten or dropout only)"
                        % (self.nodes[j]["kind"], self.nodes[j]["name"]))
        shape = tensor_shape(n.args[0])
        c = self.shape_of(x)[0]
        if shape != (1, c):
            self.refuse(n, "applied to a tensor of shape %s; flatten the pooled (N, %d, 1, 1) "
                        "map to (N, %d) first" % (shape, c, c))
        if m.in_features != c:
            self.refuse(n, "takes %d features, its input has %d" % (m.in_features, c))
        if m.bias is None:
            self.refuse(n, "has no bias; legr-model's fc layer always has one")
        return self.add_node(n, "fc", x, c=m.out_features, h=1, w=1,
                             tensors=[("params", ".weight"), ("params", ".bias")])

    def identity_reshape(self, n, x):
        """flatten/view/reshape: the identity on a 1x1 map that stays (N, C) or (N, C, 1, 1)."""
        c, h, w = self.shape_of(x)
        got = tensor_shape(n)
        if h != 1 or w != 1 or got not in ((1, c), (1, c, 1, 1)):
            self.refuse(n, "reshapes a (N, %d, %d, %d) tensor to %s; legr-model has no flatten "
                        "node: only a globally pooled 1x1 map can be flattened (for the Linear "
                        "layer)" % (c, h, w, "(N, %s)" % ", ".join(str(d) for d in got[1:])
                                    if got else "a non-tensor"))
        return x

    # -- dispatch -------------------------------------------------------------------------

    def module_call(self, n):
        m = self.gm.get_submodule(n.target)
        x = self.input_of_module_call(n)
        t = type(m)
        if t is nn.Conv2d:
            return self.conv(n, m, x)
        if t is nn.BatchNorm2d:
            return self.bn(n, m, x)
        if t is nn.ReLU:
            return self.simple(n, "relu", x)
        if t is nn.ReLU6 or (t is nn.Hardtanh and m.min_val == 0 and m.max_val == 6):
            return self.simple(n, "relu6", x)
        if t is nn.MaxPool2d:
            return self.maxpool(n, x, m.kernel_size, m.stride, m.padding, m.dilation,
                                m.ceil_mode, m.return_indices)
        if t is nn.AdaptiveAvgPool2d:
            if m.output_size not in (1, (1, 1), [1, 1]):
                self.refuse(n, "output size %s; only global pooling (output size 1) is "
                            "supported" % (m.output_size,))
            return self.gap(n, x)
        if t is nn.Dropout:
            return self.dropout(n, x, m.p)
        if t is nn.Linear:
            return self.fc(n, m, x)
        if t is nn.Identity:
            return x
        if t is nn.Flatten:
            return self.identity_reshape(n, x)
        if t is nn.Hardtanh:
            self.refuse(n, "Hardtanh(%g, %g); only (0, 6), i.e. ReLU6, is supported"
                        % (m.min_val, m.max_val))
        self.refuse(n, "legr-model has no such layer (supported: Conv2d, BatchNorm2d, ReLU, "
                    "ReLU6, MaxPool2d, AdaptiveAvgPool2d(1), Dropout, Linear, Flatten, Identity "
                    "and additions)")

    def function_call(self, n):
        f = n.target
        if f in ADD_FUNCS:
            if len(n.args) != 2 or (f is torch.add and n.kwargs.get("alpha", 1) != 1) or \
                    any(k not in ("alpha",) for k in n.kwargs):
                self.refuse(n, "only the plain sum of two tensors is supported")
            return self.add(n, self.arg(n, n.args[0], "first operand"),
                            self.arg(n, n.args[1], "second operand"))
        known = RELU_FUNCS | RELU6_FUNCS | HARDTANH_FUNCS | MEAN_FUNCS | FLATTEN_FUNCS | {
            F.max_pool2d, F.adaptive_avg_pool2d, F.dropout}
        if f not in known:
            self.refuse(n, "legr-model has no such operation")
        if not n.args:
            self.refuse(n, "called without a tensor argument")
        x = self.arg(n, n.args[0])
        if f in RELU_FUNCS:
            return self.simple(n, "relu", x)
        if f in RELU6_FUNCS:
            return self.simple(n, "relu6", x)
        if f in HARDTANH_FUNCS:
            a = self.fn_args(n, ["min_val", "max_val"], {"min_val": -1.0, "max_val": 1.0})
            if a["min_val"] != 0 or a["max_val"] != 6:
                self.refuse(n, "hardtanh(%s, %s); only (0, 6), i.e. ReLU6, is supported"
                            % (a["min_val"], a["max_val"]))
            return self.simple(n, "relu6", x)
        if f is F.max_pool2d:
            a = self.fn_args(n, ["kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                 "return_indices"],
                             {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                              "return_indices": False})
            if "kernel_size" not in a:
                self.refuse(n, "no kernel size")
            return self.maxpool(n, x, a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                                a["ceil_mode"], a["return_indices"])
        if f is F.adaptive_avg_pool2d:
            a = self.fn_args(n, ["output_size"], {})
            if a.get("output_size") not in (1, (1, 1), [1, 1]):
                self.refuse(n, "output size %s; only global pooling (output size 1) is "
                            "supported" % (a.get("output_size"),))
            return self.gap(n, x)
        if f in MEAN_FUNCS:
            return self.mean(n, x, self.fn_args(n, ["dim", "keepdim"], {"keepdim": False}))
        if f is F.dropout:
            a = self.fn_args(n, ["p", "training", "inplace"], {"p": 0.5})
            return self.dropout(n, x, a["p"])
        return self.identity_reshape(n, x)  # FLATTEN_FUNCS

    def mean(self, n, x, a):
        dims = a.get("dim")
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        if tensor_shape(n.args[0]) is None or len(tensor_shape(n.args[0])) != 4 or \
                not all(isinstance(d, int) for d in dims) or \
                sorted(d % 4 for d in dims) != [2, 3] or \
                a.get("dtype") is not None:
            self.refuse(n, "mean over dims %s; only the spatial mean over (2, 3) of an NCHW "
                        "tensor (global average pooling) is supported" % (dims,))
        return self.gap(n, x)

    def method_call(self, n):
        name = n.target
        if name in ("add", "add_"):
            if len(n.args) != 2 or n.kwargs.get("alpha", 1) != 1:
                self.refuse(n, "only the plain sum of two tensors is supported")
            return self.add(n, self.arg(n, n.args[0], "first operand"),
                            self.arg(n, n.args[1], "second operand"))
        if name not in ("relu", "relu_", "contiguous", "mean") and name not in RESHAPE_METHODS:
            self.refuse(n, "legr-model has no such operation")
        x = self.arg(n, n.args[0])
        if name in ("relu", "relu_"):
            return self.simple(n, "relu", x)
        if name in RESHAPE_METHODS:
            return self.identity_reshape(n, x)
        if name == "contiguous":
            return x
        return self.mean(n, x, self.fn_args(n, ["dim", "keepdim"], {"keepdim": False}))

    def check_inplace(self, n, order):
        """An in-place op must be the last reader of the tensor it overwrites: this converter
        treats it as a new value, which later readers of the old one would not see."""
        inplace = (n.op == "call_function" and (n.target in INPLACE_FUNCS or
                                                n.kwargs.get("inplace") is True)) or \
                  (n.op == "call_method" and n.target.endswith("_")) or \
                  (n.op == "call_module" and getattr(self.gm.get_submodule(n.target),
                                                     "inplace", False))
        if not inplace or not n.args or not isinstance(n.args[0], torch.fx.Node):
            return
        src = n.args[0]
        later = [u for u in src.users if u is not n and order[u] > order[n]]
        if later:
            self.refuse(n, "overwrites '%s' in place, which '%s' reads afterwards; use the "
                        "returned value (x = op(x)) or the out-of-place form"
                        % (src.name, later[0].name))

    def run(self):
        graph = self.gm.graph
        order = {n: i for i, n in enumerate(graph.nodes)}
        out_node = None
        # Nodes the output does not depend on are skipped (torch.fx keeps dead code).
        live, stack = set(), [n for n in graph.nodes if n.op == "output"]
        while stack:
            n = stack.pop()
            if n not in live:
                live.add(n)
                stack.extend(n.all_input_nodes)
        skipped = 0
        for n in graph.nodes:
            if n.op == "output":
                out_node = n
                continue
            self.check_inplace(n, order)
            if n not in live and n.op != "placeholder":
                skipped += 1
                continue
            if n.op == "placeholder":
                shape = tensor_shape(n)
                if self.nodes:
                    self.refuse(n, "a second input ('%s'); legr-model networks take one image "
                                "tensor" % n.target)
                if shape is None or len(shape) != 4:
                    self.refuse(n, "the input is not an NCHW tensor")
                self.env[n] = len(self.nodes)
                self.names.add("input")
                self.nodes.append(dict(name="input", kind="input", in0=-1, in1=-1, c=shape[1],
                                       h=shape[2], w=shape[3], k=0, stride=1, pad=0, groups=1,
                                       bias=0, drop_p=0.0))
                continue
            if n.op == "get_attr":
                self.refuse(n, "the network reads a stored tensor directly (a functional layer "
                            "such as F.conv2d with its own weight); use nn.Conv2d, nn.Linear, "
                            "nn.BatchNorm2d modules")
            if tensor_shape(n) is None:
                # A non-tensor value: only shape queries (x.size(0), x.shape[0]) are accepted;
                # the reshapes that use them are checked by their output shape.
                ok = (n.op == "call_method" and n.target in SHAPE_METHODS) or \
                     (n.op == "call_function" and n.target is builtins.getattr and
                      len(n.args) == 2 and n.args[1] == "shape") or \
                     (n.op == "call_function" and n.target is operator.getitem and
                      isinstance(n.args[0], torch.fx.Node) and tensor_shape(n.args[0]) is None)
                if not ok:
                    self.refuse(n, "it does not compute a tensor and is not a shape query")
                self.env[n] = None
                continue
            if n.op == "call_module":
                self.env[n] = self.module_call(n)
            elif n.op == "call_function":
                self.env[n] = self.function_call(n)
            elif n.op == "call_method":
                self.env[n] = self.method_call(n)
            else:
                self.refuse(n, "unexpected graph node")
        if skipped:
            progress("note: %d operation(s) the output does not depend on were left out"
                     % skipped)
        if out_node is None or len(out_node.args) != 1 or \
                not isinstance(out_node.args[0], torch.fx.Node):
            raise Unsupported("the forward of %s must return one tensor (the logits), not %r"
                              % (self.desc, out_node.args[0] if out_node else None))
        res = self.env.get(out_node.args[0])
        last = len(self.nodes) - 1
        if res is None or self.nodes[res]["kind"] != "fc" or res != last:
            what = self.nodes[res]["kind"] if res is not None else "a non-tensor"
            raise Unsupported("the forward of %s returns the output of %s ('%s'); a legr-model "
                              "network ends with its Linear layer (the logits)"
                              % (self.desc, what, out_node.args[0].name))
        n_fc = sum(r["kind"] == "fc" for r in self.nodes)
        if n_fc != 1:
            raise Unsupported("%s has %d Linear layers; a legr-model network has one, the "
                              "classifier" % (self.desc, n_fc))
        for r in self.nodes:
            if len(r["kind"]) > KIND_MAX:
                raise RuntimeError("kind %r too long" % r["kind"])
        unused = [k for k in self.state if k not in self.used_keys and
                  not k.endswith("num_batches_tracked")]
        if unused:
            progress("note: %d tensor(s) of the state_dict belong to layers the forward does not "
                     "use and are not written (e.g. %s)" % (len(unused), ", ".join(unused[:3])))


def macs_and_params(nodes):
    """legr-mpi's arch_flops and arch_params (src/nn/arch.c)."""
    flops = params = 0
    for r in nodes:
        if r["kind"] == "conv":
            cin = nodes[r["in0"]]["c"] // r["groups"]
            flops += r["h"] * r["w"] * r["c"] * cin * r["k"] * r["k"]
            params += r["c"] * cin * r["k"] * r["k"] + (r["c"] if r["bias"] else 0)
        elif r["kind"] == "bn":
            params += 2 * r["c"]
        elif r["kind"] == "fc":
            flops += nodes[r["in0"]]["c"] * r["c"]
            params += nodes[r["in0"]]["c"] * r["c"] + r["c"]
    return flops, params


# ---------------------------------------------------------------------------------------------
# Writing: the same HDF5 types as legr-mpi's own writer (fixed-length NUL-terminated strings,
# little-endian int32/int64/float32).

def c_string(size):
    t = h5py.h5t.C_S1.copy()
    t.set_size(size)
    t.set_strpad(h5py.h5t.STR_NULLTERM)
    return t


def set_string_attr(obj, name, value):
    raw = value.encode("ascii", "replace")
    t = c_string(len(raw) + 1)
    aid = h5py.h5a.create(obj.id, name.encode(), t, h5py.h5s.create(h5py.h5s.SCALAR))
    aid.write(np.array(raw + b"\0", dtype="S%d" % (len(raw) + 1)), mtype=t)


NODE_DTYPE = np.dtype([("name", "S48"), ("kind", "S16"), ("in0", "<i4"), ("in1", "<i4"),
                       ("c", "<i4"), ("h", "<i4"), ("w", "<i4"), ("k", "<i4"),
                       ("stride", "<i4"), ("pad", "<i4"), ("groups", "<i4"), ("bias", "<i4"),
                       ("drop_p", "<f4")])


def node_type():
    """The compound type of /arch/nodes, laid out as NODE_DTYPE."""
    t = h5py.h5t.create(h5py.h5t.COMPOUND, NODE_DTYPE.itemsize)
    for field in NODE_DTYPE.names:
        dt, offset = NODE_DTYPE.fields[field][:2]
        if dt.kind == "S":
            ft = c_string(dt.itemsize)
        elif dt.kind == "f":
            ft = h5py.h5t.IEEE_F32LE
        else:
            ft = h5py.h5t.STD_I32LE
        t.insert(field.encode(), offset, ft)
    return t


def legr_version():
    """The project version (CMakeLists.txt beside tools/), as legr-mpi writes it."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "CMakeLists.txt")
    try:
        with open(path) as f:
            m = re.search(r"project\(\s*legr-mpi\s+VERSION\s+([0-9.]+)", f.read())
        return m.group(1) if m else "unknown"
    except OSError:
        return "unknown"


def write_file(out, conv, state, config):
    nodes = conv.nodes
    rows = np.zeros(len(nodes), NODE_DTYPE)
    for field in NODE_DTYPE.names:
        rows[field] = [r[field].encode() if isinstance(r[field], str) else r[field]
                       for r in nodes]
    flops, params = macs_and_params(nodes)
    tmp = out + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            set_string_attr(f, "format", "legr-model")
            f.attrs.create("format_version", 1, dtype="<i4")
            set_string_attr(f, "legr_version", legr_version())
            set_string_attr(f, "config", config)
            f.attrs.create("flops", flops, dtype="<i8")
            f.attrs.create("params", params, dtype="<i8")
            arch = f.create_group("arch")
            arch.create_group("chan_map")  # option-A shortcuts only; none come from PyTorch
            arch.attrs.create("num_classes", nodes[-1]["c"], dtype="<i4")
            t = node_type()
            dsid = h5py.h5d.create(arch.id, b"nodes", t, h5py.h5s.create_simple((len(nodes),)))
            dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, rows, mtype=t)
            groups = {"params": f.create_group("params"), "buffers": f.create_group("buffers")}
            for group, name, key in conv.tensors:
                data = state[key].detach().cpu().to(torch.float32).contiguous().numpy()
                groups[group].create_dataset(name, data=data.astype("<f4"))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return flops, params


# ---------------------------------------------------------------------------------------------

def run(args):
    if args.input is None and not args.model.startswith("torchvision:"):
        raise UsageError("--input C,H,W is required for FILE.py:CLASS models (e.g. --input "
                         "3,32,32)")
    shape = parse_input(args.input) if args.input else (3, 224, 224)
    if args.classes is not None and args.classes < 1:
        raise UsageError("--classes %d must be at least 1" % args.classes)
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UsageError("-o %s: directory %s does not exist" % (args.output, out_dir))
    torch.manual_seed(args.seed)
    progress("building %s" % args.model)
    model, desc = build_model(args.model, args.classes if args.model.startswith("torchvision:")
                              else None)
    if args.weights:
        progress("loading weights from %s" % args.weights)
        load_weights(model, args.weights)
    model.float().eval()
    progress("tracing with torch.fx on a 1x%dx%dx%d input" % shape)
    gm = trace(model, shape, desc)
    state = model.state_dict()
    conv = Converter(gm, desc, state)
    conv.run()
    classes = conv.nodes[-1]["c"]
    if args.classes is not None and classes != args.classes:
        raise UsageError("--classes %d, but %s has %d outputs" % (args.classes, desc, classes))
    config = "converted by torch_to_legr.py from %s, input %dx%dx%d, %s" % (
        desc, shape[0], shape[1], shape[2],
        "weights %s" % os.path.basename(args.weights) if args.weights
        else "random initialisation (seed %d)" % args.seed)
    progress("writing %s" % args.output)
    flops, params = write_file(args.output, conv, state, config)
    kinds = {}
    for r in conv.nodes:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print("torch_to_legr: %s: %d nodes (%s), %d classes, input %dx%dx%d, %d MACs (%.2f M), "
          "%d params" % (args.output, len(conv.nodes), ", ".join(
              "%d %s" % (v, k) for k, v in kinds.items() if k != "input"), classes,
              shape[0], shape[1], shape[2], flops, flops / 1e6, params))
    return 0


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\nusage:")[0] + "\n\n" + __doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", metavar="MODEL",
                    help="torchvision:NAME (e.g. torchvision:resnet18) or FILE.py:CLASS")
    ap.add_argument("-o", "--output", required=True, metavar="OUT.h5",
                    help="the legr-model file to write")
    ap.add_argument("--weights", metavar="STATE_DICT.pt",
                    help="load this state_dict (torch.save) before converting")
    ap.add_argument("--input", metavar="C,H,W",
                    help="input shape per image (default 3,224,224 for torchvision models; "
                         "required for FILE.py:CLASS)")
    ap.add_argument("--classes", type=int, metavar="N",
                    help="torchvision: build with N classes; FILE.py: check the model has N")
    ap.add_argument("--seed", type=int, default=0,
                    help="torch seed of the random initialisation without --weights "
                         "(default 0)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        return run(args)
    except (UsageError, Unsupported) as e:
        print("torch_to_legr: error: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    except DataError as e:
        print("torch_to_legr: error: %s" % e, file=sys.stderr)
        return EXIT_DATA
    except OSError as e:
        print("torch_to_legr: error: cannot write %s: %s" % (args.output, e), file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
