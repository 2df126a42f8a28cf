# Thin wrapper around Meson/Ninja.  See README.md.
BUILD ?= build

.PHONY: all check demo clean install

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD)

# Every test tier: gcc and clang builds, unit/server/passthrough/vhost/
# integration suites, the ASan+UBSan build, fuzz corpus replay, and the
# QEMU guest suite.  Ends with "N passed, N failed".
check:
	bash scripts/check.sh

# A Linux guest mounts a host directory through VirtFS.
demo:
	bash scripts/demo.sh

install: all
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) build-clang build-asan build-fuzz
