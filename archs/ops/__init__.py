"""archbench.archs.ops: the recurrences of the mixers, apart from the layers that use them.

One file per recurrence family, each holding the definition beside its fast forms, as
flash-linear-attention lays out its ops:

    <op>_sequential(inputs..., state0=None)              the loop over time, the definition -> (y, state)
    <op>_chunked(inputs..., state0=None, chunk_size=Q)   the parallel form, same contract
    <op>_step(one token's inputs..., state)              one token, used by the layer's `step`

    selective_scan.py   Mamba's S6 scan (archs/mixers/mamba.py)
    ssd.py              Mamba-2's SSD (archs/mixers/mamba2.py), plus its fla and mamba-ssm kernels
    wkv.py              RWKV-6's WKV (archs/mixers/rwkv.py), plus its fla kernel
    gated_linear.py     the diagonal-decay op of linear_attention, retnet, gla, plus their fla kernels
    delta_rule.py       the delta rule of deltanet, gated_deltanet, kda, plus their fla kernels
    rwkv7.py            RWKV-7's DPLR recurrence (archs/mixers/rwkv7.py), plus its fla kernel
    mamba3.py           Mamba-3's trapezoidal SSD (archs/mixers/mamba3.py), plus its mamba-ssm kernel
    rglru.py            the RG-LRU of Griffin / Hawk / RecurrentGemma, a diagonal gated recurrence
    short_conv.py       the gated short convolution of LFM2 and Zoology's BaseConv (parallel: W multiply-adds)
    hgrn2.py            HGRN2: gated_linear.py's op with the key tied to the forget gate, k = 1 - f
    sliding_window.py   banded sliding-window attention (archs/mixers/swa.py)
    rope.py             rotary positions (attention, swa, retnet, mamba3)
    common.py           plumbing shared by the mixers: state dtype, optional kernels and the choice of
                        backend, Δ / A init, decay floor, token shift, depthwise conv, short conv
    mlstm.py            xLSTM's mLSTM: matrix memory, exponential input gate with its stabiliser
    delta_product.py    Gated DeltaProduct: n_h Householder steps per token, as delta_rule.py over them,
                        plus the fla path (fla's gated delta-rule kernel over the interleaved steps)
    based.py            Based's Taylor-feature linear attention (its window part is sliding_window.py)

Every `<op>_chunked` is tested against `<op>_sequential` (tests/ops/test_ops_*.py), values and gradients,
at lengths that cross chunk boundaries and from a non-zero initial state.
"""
