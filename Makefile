# Thin wrapper around Meson/Ninja.  See README.md.
BUILD ?= build

.PHONY: all check demo clean install

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD)

# Every test tier: the non-guest suites in the gcc, clang, release,
# Debian-hardened, LTO and ASan+UBSan builds, valgrind, an install check,
# clang-tidy, libFuzzer, and the QEMU guest suites (scripts/check.sh).
# Ends with "N passed, N failed".
check:
	bash scripts/check.sh

# A Linux guest mounts a host directory through VirtFS.
demo:
	bash scripts/demo.sh

install: all
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) build-clang build-release build-hardened build-lto \
	    build-asan build-fuzz build*.args build*.setup.log
