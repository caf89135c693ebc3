"""espnet_blsp: BLSP and BLSP-KD as an ESPnet2 plugin recipe."""

from setuptools import find_packages, setup

install_requires = [
    "espnet==202511",
    "torch>=2.1",
    # 2.11.1 is not ABI-compatible with the torch 2.12.x that espnet 202511 resolves to
    # ("undefined symbol: torch_exception_get_what_without_backtrace"); 2.11.0 is
    "torchaudio!=2.11.1",
    "transformers>=5.0",  # dtype=, the WhisperEncoderLayer call, GGUF loading
    "peft",
    "sentencepiece",
    "kaldiio",
    "sacrebleu",
    "jiwer",
    "pyyaml",
    "humanfriendly",
    "soundfile",
    "safetensors",
    "tqdm",
    "tensorboard",  # ESPnet's trainer logs to it
]

extras_require = {
    # offline mini default: GGUF loading, TTS for the synthetic corpus, learning-curve plots
    "mini": ["gguf", "accelerate", "piper-tts==1.8.0", "matplotlib"],
    # --use_deepspeed (ESPnet's DeepSpeed trainer; CUDA only)
    "deepspeed": ["deepspeed"],
    # the web demo (python -m espnet_blsp.bin.demo, make web-demo)
    "demo": ["gradio>=6,<7"],
    # bin/analyze and bin/asr_probe: t-SNE (scikit-learn) and the figures
    "analysis": ["scikit-learn", "matplotlib"],
    # deepspeed: tests/test_deepspeed.py drives the engine on CPU processes; matplotlib: learning curves;
    # gradio + selenium: tests/test_demo_browser.py (with Debian's chromium and chromium-driver, make install-browser);
    # scikit-learn: tests/test_analysis.py (t-SNE); pytest-xdist: make test runs two workers
    "test": ["pytest", "pytest-xdist>=3.6", "hypothesis", "deepspeed", "matplotlib", "gradio>=6,<7", "selenium", "scikit-learn"],
}

setup(
    name="espnet_blsp",
    version="0.1.0",
    description="BLSP / BLSP-KD: speech input for frozen instruction-following LLMs, "
    "as an ESPnet2 plugin recipe",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["espnet_blsp", "espnet_blsp.*"]),
    python_requires=">=3.9",
    install_requires=install_requires,
    extras_require=extras_require,
    license="Apache-2.0",
)
