# holdfast: a thin wrapper around meson + ninja for the README's two commands.
#
#   make          install what is missing (scripts/bootstrap), configure build/, build
#   make demo     the above, then holdfast drill as root (sample tree, vault, sentinel, every
#                 attack of the simulator, recover, verify, the vault round trip); without root
#                 scripts/demo.sh (backup, change, backup, restore, verify)
#   make check    the above, then every test suite, the linters, and the unit, fuzz and
#                 integration suites again under ASan+UBSan (build-asan/); prints the time of
#                 each phase and fails if any phase failed
#   make clean    remove build/ and build-asan/
#
# Everything real lives in meson.build files and scripts/; nothing here needs editing to add a
# source file or a test.

SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := all
.PHONY: all demo check clean

BUILD ?= build
ASAN_BUILD ?= build-asan
MESON_ARGS ?=
# Extra arguments for every `meson test` (e.g. MESON_TEST_ARGS='--suite unit').
MESON_TEST_ARGS ?=
# Tests run at once (the sentinel's and recovery's modules always alone). The others wait on
# fsync, servers and loop devices part of the time: on 2 cores their six modules took 356 s
# two at a time (CPU 74 % busy), 282 s three at a time (86 %), 306 s four at a time (95 %).
TEST_JOBS ?= $(shell echo $$(( $$(nproc) + 1 )))
# Extra arguments for `holdfast drill` in `make demo` (e.g. DRILL_ARGS="--attack encrypt --keep").
DRILL_ARGS ?=

# Any ASan, LSan or UBSan report fails the run: stop at the first error, check leaks at exit,
# and use an exit code no holdfast path uses (the integration runner also fails a test on any
# sanitizer output).
ASAN_OPTIONS_CHECK := halt_on_error=1:abort_on_error=0:detect_leaks=1:exitcode=99:print_summary=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1
UBSAN_OPTIONS_CHECK := halt_on_error=1:print_stacktrace=1:print_summary=1:exitcode=99

# phase LABEL CMD...: runs CMD, then prints LABEL, ok/FAILED and the elapsed time. The lines
# are kept for the summary at the end of `make check`.
define PHASE_LIB
summary=()
phase() {
	local label=$$1 t0=$${EPOCHREALTIME/./} rc=0 us st
	shift
	printf '==> %s\n' "$$label"
	"$$@" || rc=$$?
	us=$$(( $${EPOCHREALTIME/./} - t0 ))
	st=ok; ((rc == 0)) || st="FAILED (exit $$rc)"
	summary+=("$$(printf '%-34s %7d.%ds  %s' "$$label" $$((us / 1000000)) $$((us / 100000 % 10)) "$$st")")
	printf '<== %s: %s in %d.%ds\n' "$$label" "$$st" $$((us / 1000000)) $$((us / 100000 % 10))
	return $$rc
}
# quietly LOG CMD...: runs CMD with its output in LOG, shown only when CMD fails.
quietly() {
	local log=$$1
	shift
	"$$@" >"$$log" 2>&1 && return 0
	local rc=$$?
	tail -n 200 "$$log"
	echo "(full output: $$log)"
	return $$rc
}
# configure DIR ARGS...: meson setup DIR unless DIR is already configured.
configure() {
	local dir=$$1
	shift
	[[ -f "$$dir/build.ninja" ]] && return 0
	local wipe=()
	[[ -d "$$dir/meson-private" ]] && wipe=(--wipe)
	mkdir -p "$$dir"
	quietly "$$dir/meson-setup.log" meson setup "$${wipe[@]}" "$$dir" "$$@"
}
tidy() {
	local log=$(BUILD)/clang-tidy.log
	find src -name '*.c' -print0 | LC_ALL=C sort -z |
		xargs -0 -P "$$(nproc)" -n 4 clang-tidy -p $(BUILD) --quiet >"$$log" 2>&1 && return 0
	grep -E -A6 '(error|warning):' "$$log" | grep -v 'warnings generated' | head -n 300
	echo "(full output: $$log)"
	return 1
}
endef
export PHASE_LIB

BUILD_PHASES = \
	phase "bootstrap (apt packages)" scripts/bootstrap && \
	phase "configure $(BUILD)" configure $(BUILD) $(MESON_ARGS) && \
	phase "build $(BUILD)" ninja -C $(BUILD) --quiet

all:
	@eval "$$PHASE_LIB"
	$(BUILD_PHASES)

demo:
	@eval "$$PHASE_LIB"
	$(BUILD_PHASES) || exit 1
	hf=$${HOLDFAST:-$(BUILD)/src/cli/holdfast}
	if [[ $$EUID -eq 0 ]]; then
		"$$hf" drill $(DRILL_ARGS)
	else
		echo "make demo: holdfast drill needs root (the sentinel); the vault round trip only"
		HOLDFAST="$$hf" scripts/demo.sh
	fi

check:
	@eval "$$PHASE_LIB"
	t_start=$${EPOCHREALTIME/./}
	failed=()
	$(BUILD_PHASES) || failed+=("build")
	if ((!$${#failed[@]})); then
		phase "tests (unit, fuzz, integration)" \
			meson test -C $(BUILD) --print-errorlogs --num-processes $(TEST_JOBS) \
			$(MESON_TEST_ARGS) || failed+=("tests")
	fi
	phase "lint: clang-format" scripts/check-format || failed+=("check-format")
	phase "lint: banned functions" scripts/check-banned || failed+=("check-banned")
	phase "lint: layers" scripts/check-layers || failed+=("check-layers")
	phase "lint: clang-tidy" tidy || failed+=("clang-tidy")
	if phase "configure $(ASAN_BUILD) (ASan+UBSan)" configure $(ASAN_BUILD) $(MESON_ARGS) \
			-Db_sanitize=address,undefined -Db_lundef=false &&
	   phase "build $(ASAN_BUILD)" ninja -C $(ASAN_BUILD) --quiet; then
		phase "ASan+UBSan tests" env ASAN_OPTIONS='$(ASAN_OPTIONS_CHECK)' \
			UBSAN_OPTIONS='$(UBSAN_OPTIONS_CHECK)' HF_TEST_FILESYSTEMS='ext4 xfs' \
			meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes $(TEST_JOBS) \
			--suite unit --suite fuzz --suite integration $(MESON_TEST_ARGS) \
			|| failed+=("sanitizer tests")
	else
		failed+=("sanitizer build")
	fi
	us=$$(( $${EPOCHREALTIME/./} - t_start ))
	echo
	echo "make check: phases"
	printf '  %s\n' "$${summary[@]}"
	printf '  %-34s %7d.%ds\n' "total" $$((us / 1000000)) $$((us / 100000 % 10))
	if (($${#failed[@]})); then
		echo "make check: FAILED: $${failed[*]}"
		exit 1
	fi
	echo "make check: all phases passed"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
