"""The decode step as it is served: eager, compiled (torch.compile with inductor), or a captured CUDA graph.

Not an experiment kind: the scaling experiment's decode mode and the generation experiment both build
their per-token step here, warmed up (compiled, captured) before anything is timed.

Why: at batch 1 and d_model 256 one eager `step` is a few dozen tiny ops, and on a CPU its time is
the interpreter and the dispatcher, not the architecture (the eager rows of
results/scaling_*_decode_bound.md sit far above their bytes-moved bound, the compiled ones much closer). A
server compiles the step (vLLM: torch.compile and CUDA graphs). So a model's stateful
`step(x, states) -> (y, states)` becomes a function of a flat tuple of state tensors ("leaves"),
which can be compiled or captured:

  functional  fn(x, *leaves) -> (y, new): `new[i]` is a tensor the step made in place of leaf i
              (attention's position), None where it kept the leaf (updating it in place or not). The
              scaling experiment times it and never writes a new leaf back, so a timed step always
              runs at context n, however many repeats the timer needs (as the eager path does).
  in place    fn(x, *leaves) -> y, every new leaf copied into its input: generation runs it token
              after token, and a CUDA graph can replay it (its inputs must stay where they are).

What made a naive `torch.compile(backbone.step)` slower than eager on a CPU (not recompiles or graph
breaks: TORCH_LOGS=recompiles,graph_breaks shows neither, every mixer's step traces with
fullgraph=True), and what is done about it here:
  1. OpenMP barriers. Inductor splits a generated loop across threads once each thread gets 512
     elements; aten splits an op only past 32768 (at::internal::GRAIN_SIZE). So the compiled step
     enters parallel regions an eager step never does, and where the cores are shared with other
     processes each region's barrier waits for a descheduled thread: a wait far longer than the tiny
     loop it splits. Fix: `cpp.min_chunk_size` at aten's grain, so the compiled step splits a loop
     across threads only where eager would split it too.
  2. Inference mode. The compiled path prefills and steps under `no_grad`: a tensor made under
     `inference_mode` cannot be updated in place outside it, and the mode is not what made the
     compiled step slow (under either mode it was as fast once item 1 was fixed).
  3. The cache limit. Dynamo keeps compiled entries per code object (8 by default), and every cell of
     a sweep compiles a closure of the same code: past eight cells it would silently run eager.
     `compile_fn` resets Dynamo first (cells run one after another; nothing else is compiled).
  4. Guards. Each call checks every input and parameter tensor, a cost that grows with depth;
     `serving()` skips them where one compiled entry is called with the same inputs every time
     (`set_stance(skip_guard_eval_unsafe=True)`; serving stacks bypass Dynamo's guards likewise).
  5. Matrix-vector products. At batch 1 every projection is a (1, d) @ (d, m) product, which inductor
     hands to MKL's sgemm as an extern call: it reads these small weights well below the CPU's copy
     rate, and each call splits the step into separately launched kernels. Inductor's
     `decompose_mm_pass` rewrites such a product as multiply-and-sum, which it fuses with the ops
     around it: a recurrent mixer's whole step becomes one C++ kernel, and a faster one. Ops that
     inductor cannot generate split the kernel the same way; the layers avoid them in `step`
     (delta_layer.py: the one-token conv; ops/rope.py: no complex numbers under compile).
  6. Size asserts. The generated Python wrapper checks every input's size and stride per call
     (dozens at depth 4): off, since every call passes the inputs it was compiled for.
  7. Dynamo itself. Even with guards skipped, a call through Dynamo runs its frame hook, a cache
     lookup and the bytecode that gathers the graph's inputs (every parameter by attribute): Python
     that costs a sizeable share of a compiled recurrent step, more than its bytes-moved bound.
     Serving stacks skip Dynamo's dispatch once compiled (vLLM calls the compiled code itself
     after the first trace); `compile_call` goes further for a call whose inputs never change (the
     scaling experiment's timed step): the backend records inductor's compiled graph and the tensors
     it was traced with, and each call is `graph(*inputs)`: AOTAutograd's runtime wrapper, the
     generated code, the kernel.
What remains is that wrapper and the generated Python around the kernel (`archbench profile` shows
the split; results/profiles/ holds one), and the kernel itself. The profiles behind items 5-7 and the
layers' choices are summarised in results/METHODS.md, "Measurements behind code defaults".

Glossary
  leaves   the state's tensors in `torch.utils._pytree` order; `spec` rebuilds the containers
  label    what ran, appended to the row's backend: "compiled", "eager", "cudagraph", or
           "eager (compile failed: <error>)" where inductor is unavailable
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from archbench.bench.measure.device import compiler_error

DECODE_BACKENDS = ("auto", "eager", "compiled", "cudagraph")
ATEN_GRAIN = 32768  # at::internal::GRAIN_SIZE: aten runs an op on one thread below this many elements
GRAPH_WARMUP = 3  # eager calls before capture, as torch.cuda.graphs requires
COMPILE_WARMUP = 2  # the first call compiles; the second runs the compiled code once before timing
# Errors that mean "this step cannot be compiled here" (no C++ compiler or triton, a graph break under
# fullgraph: all RuntimeErrors in torch): the step then runs eager, labelled. Anything else (the run
# loop's time limit, MemoryError) propagates.
CANNOT_COMPILE = (RuntimeError, ImportError, OSError, NotImplementedError)

StepFn = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]  # (x, states) -> (y, states)


def resolve(requested: str, device: torch.device | str) -> str:
    """The decode path `requested` means on `device`: "auto" is a CUDA graph on CUDA, compiled elsewhere."""
    if requested not in DECODE_BACKENDS:
        raise ValueError(f"unknown decode backend {requested!r}; choose from: {', '.join(DECODE_BACKENDS)}")
    cuda = torch.device(device).type == "cuda"
    if requested == "auto":
        return "cudagraph" if cuda else "compiled"
    if requested == "cudagraph" and not cuda:
        raise ValueError("decode backend 'cudagraph' needs a CUDA device; choose from: auto, eager, compiled")
    return requested


def flatten(states: Any) -> tuple[list[torch.Tensor], Any]:
    """(leaves, spec) of a nested state; `pytree.tree_unflatten(leaves, spec)` rebuilds its containers."""
    return pytree.tree_flatten(states)


def functional(step: StepFn, spec: Any) -> Callable[..., tuple[torch.Tensor, tuple]]:
    """fn(x, *leaves) -> (y, new): the step over flat leaves; new[i] None where leaf i was kept."""

    def fn(x: torch.Tensor, *leaves: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        y, states = step(x, pytree.tree_unflatten(list(leaves), spec))
        new = pytree.tree_leaves(states)
        # `is` is decided while tracing: an updated-in-place leaf is not returned (no output aliases
        # an input, which would cost a runtime wrapper per leaf).
        return y, tuple(None if n is o else n for n, o in zip(new, leaves, strict=True))

    return fn


def in_place(step: StepFn, spec: Any) -> Callable[..., torch.Tensor]:
    """fn(x, *leaves) -> y with every state update written into `leaves` (for loops and graph replay)."""
    fn = functional(step, spec)

    def run(x: torch.Tensor, *leaves: torch.Tensor) -> torch.Tensor:
        y, new = fn(x, *leaves)
        for leaf, n in zip(leaves, new, strict=True):
            if n is not None:
                leaf.copy_(n)
        return y

    return run


def inductor_options() -> dict[str, Any]:
    """Inductor's settings for a decode step (the module docstring's items 1, 5 and 6)."""
    return {
        # Item 1: split a loop across threads only where aten would (GRAIN_SIZE elements in all).
        "cpp.min_chunk_size": max(512, ATEN_GRAIN // max(1, torch.get_num_threads())),
        # Item 5: a one-row matmul becomes a multiply-and-sum that inductor fuses with its neighbours
        # (on CPU the pass takes only mm/addmm/bmm with one row, every other dimension <= 2048).
        "post_grad_fusion_options": {"decompose_mm_pass": {}},
        # Item 6: no Python check of every input's size and stride per call.
        "size_asserts": False,
    }


def root_cause(exc: BaseException) -> BaseException:
    """The innermost error under `exc`: Dynamo wraps the backend's own error (inductor's, say)."""
    while (inner := getattr(exc, "inner_exception", None) or exc.__cause__) is not None:
        exc = inner
    return exc


def compile_fn(fn: Callable, args: tuple, backend: str | Callable = "inductor",
               warmup: int = COMPILE_WARMUP) -> tuple[Callable, str]:
    """`fn` compiled (fullgraph, static shapes) and warmed up on `args`, with its label; `fn` itself and
    "eager (compile failed: ...)" where compiling fails (no C++ compiler for inductor, say).

    The warm-up calls run `fn` for real: pass scratch tensors when it updates its inputs in place.
    """
    if (error := compiler_error()) is not None:
        return fn, f"eager (compile failed: {error})"
    torch._dynamo.reset()  # see the module docstring, item 3
    options = inductor_options() if backend == "inductor" else None
    compiled = torch.compile(fn, fullgraph=True, dynamic=False, backend=backend, options=options)
    try:
        with torch.no_grad():
            for _ in range(warmup):
                compiled(*args)
    except Exception as exc:
        root = root_cause(exc)
        if not isinstance(root, CANNOT_COMPILE):  # the cell's time limit, out of memory: not ours to hide
            raise root from exc
        reason = str(root).strip().splitlines()[0][:80] if str(root).strip() else ""
        return fn, f"eager (compile failed: {type(root).__name__}{': ' + reason if reason else ''})"
    return compiled, "compiled"


def compile_call(fn: Callable, args: tuple) -> tuple[Callable[[], Any], str]:
    """`fn(*args)` as a zero-argument call of the graph inductor compiled, without Dynamo (item 7), and
    its label; through Dynamo where the graph cannot be called directly, eager where compiling fails.
    For a call whose inputs are the same tensors every time (the scaling experiment's timed step)."""
    if (error := compiler_error()) is not None:
        return (lambda: fn(*args)), f"eager (compile failed: {error})"
    from torch._inductor.compile_fx import compile_fx

    graphs: list[tuple[Callable, list]] = []

    def capture(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        compiled = compile_fx(gm, example_inputs, config_patches=inductor_options())
        graphs.append((compiled, list(example_inputs)))
        return compiled

    compiled, label = compile_fn(fn, args, backend=capture)
    if label != "compiled" or len(graphs) != 1 or not all(
            type(t) is torch.Tensor or isinstance(t, torch.nn.Parameter) for t in graphs[0][1]):
        # Not a single graph over real tensors (a recompile, fake or symbolic inputs): Dynamo calls it.
        return (lambda: compiled(*args)), label
    graph, inputs = graphs[0]
    return (lambda: graph(*inputs)), label


@contextlib.contextmanager
def serving() -> Iterator[None]:
    """Calls of an already compiled step skip Dynamo's guards (item 4): only for one compiled entry
    called with inputs of the shapes it was compiled for, as every timed loop here does. Where the
    compiler cannot be imported nothing was compiled, and there are no guards to skip."""
    stance = contextlib.nullcontext() if compiler_error() is not None else \
        torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)
    with torch.no_grad(), stance:
        yield


def cuda_graph(call: Callable[[], Any]) -> Callable[[], Any]:
    """Capture `call` once and return a replay that gives the captured output: an eager decode step is
    a few dozen tiny kernels, so without a graph the figure is launch latency, not the architecture.
    `call` runs GRAPH_WARMUP + 1 times here; its inputs must stay where they are for every replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(GRAPH_WARMUP):
            call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = call()

    def replay():
        graph.replay()
        return out

    return replay


@dataclass
class InPlaceStep:
    """A decode step over fixed state tensors: `__call__(x) -> y` updates `leaves` in place."""

    run: Callable[[torch.Tensor], torch.Tensor]
    leaves: list[torch.Tensor]
    label: str  # compiled | eager | cudagraph | eager (compile failed: ...)
    warmup_s: float  # compiling, capturing and warm-up calls, before anything is timed

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


def prepare_in_place(step: StepFn, backend: str, x: torch.Tensor, states: Any,
                     compile_backend: str = "inductor") -> InPlaceStep:
    """The step over the tensors of `states` (scratch until filled: warm-up and capture write into them)
    on the resolved decode `backend`; `x` is an input of the shape every call will pass."""
    started = time.perf_counter()
    leaves, spec = flatten(states)
    fn = in_place(step, spec)
    if backend == "eager":
        # The model's own step with its containers (what `LM.generate` runs), not the flat wrapper.
        box = [pytree.tree_unflatten(list(leaves), spec)]

        def run(x_t: torch.Tensor) -> torch.Tensor:
            y, box[0] = step(x_t, box[0])
            return y

        return InPlaceStep(run, leaves, "eager", time.perf_counter() - started)
    if backend == "compiled":
        compiled, label = compile_fn(fn, (x, *leaves), backend=compile_backend)
        return InPlaceStep(lambda x_t: compiled(x_t, *leaves), leaves, label, time.perf_counter() - started)
    if backend == "cudagraph":
        static_x = x.clone()
        with torch.no_grad():
            replay = cuda_graph(lambda: fn(static_x, *leaves))

        def run_graph(x_t: torch.Tensor) -> torch.Tensor:
            static_x.copy_(x_t)
            return replay()

        return InPlaceStep(run_graph, leaves, "cudagraph", time.perf_counter() - started)
    raise ValueError(f"unknown decode backend {backend!r}; choose from: eager, compiled, cudagraph")


def state_traffic(fn: Callable[..., tuple[torch.Tensor, tuple]], x: torch.Tensor,
                  leaves: list[torch.Tensor]) -> tuple[int, int]:
    """(bytes read, bytes written) of state that one step cannot avoid: every state tensor is read
    (attention reads its whole KV cache), and the state bytes whose value the step changes are written
    (attention's new key and value, a recurrent state whole). Measured by running the functional step
    `fn` once on copies of `leaves`; parameters are the caller's to add."""
    copies = [leaf.clone() for leaf in leaves]
    with torch.no_grad():
        _, new = fn(x, *copies)
    written = 0
    for old, kept, made in zip(leaves, copies, new, strict=True):
        after = kept if made is None else made
        if after.shape != old.shape:
            written += after.numel() * after.element_size()
        else:
            written += int((after != old).sum()) * after.element_size()
    read = sum(leaf.numel() * leaf.element_size() for leaf in leaves)
    return read, written
