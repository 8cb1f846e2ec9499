"""The continuous-batching engine of the llama-cpp backend.

One llama.cpp context per loaded model holds ``parallel`` sequences (slots), each with
``context_size`` tokens of KV cache. A scheduler thread owns the context: each step it builds one
batch with the next token of every decoding slot plus prompt chunks of newly admitted requests
(chunked prefill), calls ``llama_decode`` once, and samples each slot with its own sampler
(logit bias, grammar, llama.cpp's sampler chain, logprobs). A request takes the free slot whose
cached tokens share the longest prefix with its prompt, and only the rest is evaluated.

Modules: ``shared`` (a model file loaded once, shared by every registration that loads it the
same way), ``scheduler`` (the thread, its slots and steps), ``batch`` (its ``llama_batch``, arrays
owned by numpy), ``threads`` (ggml's polling thread pool), ``jobs`` (a request's side: submit,
read tokens, leave), ``params`` (what a request samples with), ``slot_sampling`` (one request's
sampling), ``grammar`` (a GBNF grammar tried on the likeliest tokens first), ``log`` (where
llama.cpp's log goes; ``_log_sink.c`` is its callback in C, an optional extension). Imported only
by :mod:`localai_runtime.backends.llama_cpp`; it imports llama_cpp, numpy,
:mod:`localai_runtime.errors` and the backends' shared helpers, nothing of the backend above it.
"""
