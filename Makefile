# mech: one Makefile for the library, the CLI, the tests and the benchmarks.
#   make            libmech.a and ./mech
#   make test       every cmocka suite (SANITIZE=1: under ASan + UBSan)
#   make bench      the benchmarks in bench/
#   make demo       the main job on the built-in default
# Parallel by default (one job per CPU); an explicit -jN wins.
# (Only at the top level: a sub-make shares its parent's jobserver.)
ifeq ($(MAKELEVEL),0)
ifeq ($(filter -j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
endif
endif
# V=1 shows every compiler command and every test's full output.
ifeq ($(V),1)
Q :=
else
Q := @
endif
CC ?= cc
OPT ?= -O2
CFLAGS ?= $(OPT) -g
CFLAGS += -std=c11 -Wall -Wextra -Wpedantic -Wno-unused-parameter -D_GNU_SOURCE -I. -MMD -MP -pthread
LDFLAGS += -pthread
B ?= build
MECH_BIN ?= mech
ifdef SANITIZE
B := build-san
MECH_BIN := $(B)/mech
CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
LDLIBS += -lsqlite3 -lz -lm

LIB_SRC := $(wildcard core/*.c interp/*.c compiler/*.c data/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
CLI_SRC := $(wildcard cli/*.c tui/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(B)/%.o)
TESTS   := $(patsubst tests/%.c,$(B)/test/%,$(wildcard tests/test_*.c))
BENCHES := $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/bench_*.c))
DEPS_OK := $(B)/.deps-ok

all: $(DEPS_OK) $(B)/libmech.a $(MECH_BIN)

# Installs (as root) or names the Debian packages the build needs.
$(DEPS_OK): .ci/deps.sh
	@sh .ci/deps.sh
	@mkdir -p $(@D) && touch $@

$(B)/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(B)/libmech.a: $(LIB_OBJ)
	@rm -f $@
	@$(if $(Q),echo "  AR      $@")
	$(Q)$(AR) rcs $@ $^

# ncurses only in the binary (tui/*.c) and the tui suites: libmech.a stays free of it
CURSES_LIBS := $(shell pkg-config --libs ncursesw 2>/dev/null || echo -lncursesw)
TUI_OBJ := $(patsubst %.c,$(B)/%.o,$(wildcard tui/*.c))

$(MECH_BIN): $(CLI_OBJ) $(B)/libmech.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $(CLI_OBJ) $(B)/libmech.a $(CURSES_LIBS) $(LDLIBS) -o $@

# a static pattern rule: make would not chain tmux.o through the generic one
TUI_TESTS := $(patsubst tests/%.c,$(B)/test/%,$(wildcard tests/test_tui_*.c))
$(TUI_TESTS): $(B)/test/%: $(B)/tests/%.o $(B)/tests/support/check.o $(B)/tests/support/tmux.o $(TUI_OBJ) $(B)/libmech.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ -lcmocka $(CURSES_LIBS) $(LDLIBS) -o $@

$(B)/test/%: $(B)/tests/%.o $(B)/tests/support/check.o $(B)/libmech.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ -lcmocka $(LDLIBS) -o $@

$(B)/bench/%: $(B)/bench/%.o $(B)/libmech.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# the tui benchmark draws through tui/term.c: the tui objects and ncurses too
$(B)/bench/bench_tui: $(B)/bench/bench_tui.o $(TUI_OBJ) $(B)/libmech.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(CURSES_LIBS) $(LDLIBS) -o $@

$(B)/tests/support/%.o: tests/support/%.c | $(DEPS_OK)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# One line per suite; a failing suite's full output (its log) follows its
# line. V=1 prints every suite's output as it runs.
test: all $(TESTS)
	@pass=0; fail=0; for t in $(TESTS); do \
	  name=$${t##*/}; log=$$t.log; start=$$(date +%s); \
	  if [ "$(V)" = 1 ]; then MECH_BIN=./$(MECH_BIN) MECH_SANITIZED=$(SANITIZE) $$t; st=$$?; \
	  else MECH_BIN=./$(MECH_BIN) MECH_SANITIZED=$(SANITIZE) $$t >$$log 2>&1; st=$$?; fi; \
	  secs=$$(( $$(date +%s) - start )); \
	  if [ $$st -eq 0 ]; then pass=$$((pass+1)); printf '  ok    %-32s %3ss\n' $$name $$secs; \
	  else fail=$$((fail+1)); printf '  FAIL  %-32s %3ss  (log: %s)\n' $$name $$secs $$log; [ "$(V)" = 1 ] || cat $$log; fi; \
	done; echo "suites: $$pass passed, $$fail failed"; test $$fail -eq 0

bench: all $(BENCHES)
	@for b in $(BENCHES); do $$b || exit 1; done

# examples/experiments.sh trains the induction model into demo-out/ (the
# command that made examples/models/induction.safetensors; docs/train.md)
demo: all
	./$(MECH_BIN) demo
	MECH=./$(MECH_BIN) sh examples/experiments.sh demo-out
	@echo; echo "Browse every result above in the terminal interface: make tui   (= ./$(MECH_BIN) tui demo-out/results.db)"

# the terminal interface on the demo's results (made first when missing)
tui: all
	@test -f demo-out/results.db || $(MAKE) --no-print-directory demo
	./$(MECH_BIN) tui demo-out/results.db

clean:
	rm -rf build build-san build-fuzz mech demo-out

-include $(shell find $(B) -name '*.d' 2>/dev/null)
.PHONY: all test bench demo tui clean
.SECONDARY:

# The GPT-2 vocabulary is assembled into the library with .incbin, and so
# are the tokenizer's tables, built from it at compile time by a generator
# that links only the tokenizer's own objects (tools/gen_tokenizer_tables.c).
GEN_TOK_OBJ := $(addprefix $(B)/core/,tokenizer.o unicode_tables.o json.o err.o buf.o)
$(B)/tools/gen_tokenizer_tables: $(B)/tools/gen_tokenizer_tables.o $(GEN_TOK_OBJ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ -o $@
$(B)/gen/gpt2_tokenizer.bin: $(B)/tools/gen_tokenizer_tables data/gpt2/encoder.json data/gpt2/vocab.bpe
	@mkdir -p $(@D)
	@$(if $(Q),echo "  GEN     $@")
	$(Q)$< data/gpt2/encoder.json data/gpt2/vocab.bpe $@
$(B)/core/tokenizer_data.o: data/gpt2/encoder.json data/gpt2/vocab.bpe $(B)/gen/gpt2_tokenizer.bin
$(B)/core/tokenizer_data.o: private CFLAGS += -DMECH_GPT2_TABLES='"$(B)/gen/gpt2_tokenizer.bin"'
# the element-wise row loops of the backward (MECH_EW_CLONES in core/forward_int.h)
$(B)/core/backward.o: private CFLAGS += -ftree-vectorize

# --- Fuzzing (tests/fuzz/) ---------------------------------------------------
# One entry function per parser (tests/fuzz/fuzz_*.c), shared by two users:
# the libFuzzer binaries of `make fuzz` (clang, build-fuzz/) and the suite
# test_fuzz_regress, which replays tests/fuzz/corpus/<target>/ and
# tests/fuzz/regress/<target>/ in every `make test`. spec and pairs are CLI
# code, and cli/main.c holds main(): the fuzz builds link it with main renamed.
#   make fuzz                                  every target, FUZZ_SECONDS each
#   make fuzz FUZZ_TARGETS=rasp FUZZ_SECONDS=600
# New inputs go to build-fuzz/corpus/<target>/, crashes to
# build-fuzz/artifacts/<target>/; copy a crash into tests/fuzz/regress/<target>/
# once it is fixed.
FUZZ_ALL := json safetensors tokenizer_files tokenize npy spec pairs rasp
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_SECONDS ?= 60
FUZZ_FLAGS ?= -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1
FUZZ_ENTRY_OBJ := $(patsubst %.c,$(B)/%.o,$(filter-out tests/fuzz/libfuzzer.c,$(wildcard tests/fuzz/*.c)))
FUZZ_CLI_OBJ := $(filter-out $(B)/cli/main.o,$(CLI_OBJ)) $(B)/tests/fuzz/cli_main.o
ifdef FUZZ
CFLAGS += -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

$(B)/tests/fuzz/cli_main.o: cli/main.c | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Dmain=mech_cli_main -c $< -o $@

$(B)/test/test_fuzz_regress: $(B)/tests/test_fuzz_regress.o $(B)/tests/support/check.o $(FUZZ_ENTRY_OBJ) \
		$(FUZZ_CLI_OBJ) $(B)/libmech.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ -lcmocka $(CURSES_LIBS) $(LDLIBS) -o $@

# static patterns: a bare libfuzzer_%.o would let make chain its built-in
# `%: %.o` rule onto every .d file it includes
$(FUZZ_ALL:%=$(B)/tests/fuzz/libfuzzer_%.o): $(B)/tests/fuzz/libfuzzer_%.o: tests/fuzz/libfuzzer.c | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DMECH_FUZZ_TARGET=$* -c $< -o $@

$(FUZZ_ALL:%=$(B)/fuzz/%): $(B)/fuzz/%: $(B)/tests/fuzz/libfuzzer_%.o $(FUZZ_ENTRY_OBJ) $(FUZZ_CLI_OBJ) $(B)/libmech.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer $^ $(CURSES_LIBS) $(LDLIBS) -o $@

fuzz-bins: $(FUZZ_TARGETS:%=$(B)/fuzz/%)

fuzz:
	@$(MAKE) --no-print-directory B=build-fuzz CC=clang FUZZ=1 fuzz-bins
	@fail=""; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus/$$t build-fuzz/artifacts/$$t; \
	  dict=""; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
	  echo "fuzz $$t: $(FUZZ_SECONDS) s (log build-fuzz/$$t.log)"; \
	  mkdir -p build-fuzz/tmp; \
	  if MECH_FUZZ_TMPDIR=build-fuzz/tmp build-fuzz/fuzz/$$t build-fuzz/corpus/$$t tests/fuzz/corpus/$$t $$dict $(FUZZ_FLAGS) \
	      -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build-fuzz/artifacts/$$t/ >build-fuzz/$$t.log 2>&1; \
	  then grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' build-fuzz/$$t.log | tail -2; \
	  else fail="$$fail $$t"; tail -40 build-fuzz/$$t.log; fi; \
	  rm -rf build-fuzz/tmp; \
	done; \
	if [ -n "$$fail" ]; then echo "fuzz: findings in:$$fail (inputs in build-fuzz/artifacts/)"; exit 1; fi
.PHONY: fuzz fuzz-bins

# --- Python binding (python/; docs/python.md) --------------------------------
# `make python` builds the library again with -fPIC into build-pic/ (the
# static build is untouched) as libmech.so and copies it into the package
# (python/mech/libmech.so), so that PYTHONPATH=python python3 -c "import mech"
# and `pip install ./python` both find it. `make test` runs python/tests with
# Debian's /usr/bin/python3 (the environment's PYTHON overrides it) as the
# suite test_python; not under SANITIZE, whose objects an unsanitized
# interpreter cannot load (docs/python.md says how to run them under ASan).
PIC_B := build-pic
PIC_OBJ := $(LIB_SRC:%.c=$(PIC_B)/%.o)

$(PIC_B)/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $< (-fPIC)")
	$(Q)$(CC) $(filter-out -fsanitize=%,$(CFLAGS)) -fPIC -c $< -o $@

$(PIC_B)/core/tokenizer_data.o: data/gpt2/encoder.json data/gpt2/vocab.bpe $(B)/gen/gpt2_tokenizer.bin
$(PIC_B)/core/tokenizer_data.o: private CFLAGS += -DMECH_GPT2_TABLES='"$(B)/gen/gpt2_tokenizer.bin"'
$(PIC_B)/core/backward.o: private CFLAGS += -ftree-vectorize

$(PIC_B)/libmech.so: $(PIC_OBJ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -pthread $^ -lsqlite3 -lz -lm -o $@

python/mech/libmech.so: $(PIC_B)/libmech.so
	$(Q)cp $< $@

python: $(DEPS_OK) python/mech/libmech.so

ifndef SANITIZE
TESTS += $(B)/test/test_python
test: $(B)/test/test_python
endif
$(B)/test/test_python: python/tests/run.sh python/mech/libmech.so $(MECH_BIN)
	@mkdir -p $(@D)
	$(Q)cp python/tests/run.sh $@ && chmod +x $@

clean: clean-python
clean-python:
	rm -rf $(PIC_B) python/mech/libmech.so python/build python/mech.egg-info

-include $(shell find $(PIC_B) -name '*.d' 2>/dev/null)
.PHONY: python clean-python
