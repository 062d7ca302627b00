# mech: one Makefile for the library, the CLI, the tests and the benchmarks.
#   make            libmech.a and ./mech
#   make test       every cmocka suite (SANITIZE=1: under ASan + UBSan)
#   make bench      the benchmarks in bench/
#   make demo       the main job on the built-in default
# Parallel by default (one job per CPU); an explicit -jN wins.
ifeq ($(filter -j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
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

$(MECH_BIN): $(CLI_OBJ) $(B)/libmech.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $(CLI_OBJ) $(B)/libmech.a $(LDLIBS) -o $@

$(B)/test/%: $(B)/tests/%.o $(B)/tests/support/check.o $(B)/libmech.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ -lcmocka $(LDLIBS) -o $@

$(B)/bench/%: $(B)/bench/%.o $(B)/libmech.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

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

demo: all
	./$(MECH_BIN) demo
	MECH=./$(MECH_BIN) sh examples/experiments.sh demo-out

clean:
	rm -rf build build-san mech demo-out

-include $(shell find $(B) -name '*.d' 2>/dev/null)
.PHONY: all test bench demo clean
.SECONDARY:

# The GPT-2 vocabulary is assembled into the library with .incbin.
$(B)/core/tokenizer_data.o: data/gpt2/encoder.json data/gpt2/vocab.bpe
