# tend — plain make + pkg-config.
#   make          bin/tend
#   make deps     install missing Debian -dev packages (apt-get, as root)
#   make test     deps, build, every test; then the same tests under ASan+UBSan
#   make bench    benchmarks (figures and ratios; never pass/fail)
#   make soak     the crash test with 200 kill -9 (CRASH_KILLS=N to choose)
#   make bench-peers  tend against BullMQ on Redis (installs redis-server, npm packages)
#   make demo     the demo shop on embedded defaults
#   make install  PREFIX=/usr/local DESTDIR= : binary, man page, completions, unit, example config

# Lua 5.4's pkg-config name differs by distribution.
LUA_PC := $(firstword $(foreach p,lua5.4 lua-5.4 lua54,$(shell pkg-config --exists $(p) 2>/dev/null && echo $(p))))
PKGS   := $(LUA_PC) libevent sqlite3 libcurl libcjson gmime-3.0 lunar-date-3.0 libsystemd

# What `make deps` makes sure of, one requirement a line: KIND:NAME=DEBIAN-PACKAGE.
# pc: a pkg-config module, cmd: a command on PATH, py: a module Debian's
# /usr/bin/python3 imports, perl: a Perl module.
DEPS := \
  pc:lua5.4=liblua5.4-dev \
  pc:libevent=libevent-dev \
  pc:sqlite3=libsqlite3-dev \
  pc:libcurl=libcurl4-openssl-dev \
  pc:libcjson=libcjson-dev \
  pc:cmocka=libcmocka-dev \
  pc:gmime-3.0=libgmime-3.0-dev \
  pc:lunar-date-3.0=liblunar-date-dev \
  pc:libsystemd=libsystemd-dev \
  cmd:pkg-config=pkgconf \
  cmd:lua5.4=lua5.4 \
  cmd:luacheck=lua-check \
  cmd:clang=clang \
  py:aiosmtpd=python3-aiosmtpd \
  py:prometheus_client=python3-prometheus-client \
  py:lunardate=python3-lunardate \
  py:yaml=python3-yaml \
  cmd:mandoc=mandoc \
  cmd:promtool=prometheus \
  cmd:systemd-analyze=systemd \
  cmd:npm=npm \
  perl:TAP::Parser=perl
# Only `make bench-peers` needs these (not make test): the BullMQ peer.
PEERS_DEPS := cmd:redis-server=redis-server cmd:redis-cli=redis-tools cmd:node=nodejs cmd:npm=npm
# What `make bench` needs beyond DEPS (bench/healthz.sh reads the store with sqlite3).
BENCH_DEPS := cmd:sqlite3=sqlite3 cmd:curl=curl

SAN ?=
ifeq ($(SAN),1)
  BUILD   := build/asan
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  OPT     := -O1
else
  BUILD   := build/release
  SANFLAGS :=
  OPT     := -O2
endif

PKG_CFLAGS := $(if $(LUA_PC),$(shell pkg-config --cflags $(PKGS)))
PKG_LIBS   := $(if $(LUA_PC),$(shell pkg-config --libs $(PKGS)))
# User CFLAGS/LDFLAGS add to ours; they never replace -Werror & co.
# WERROR=0 turns -Werror off (for packagers); CPPFLAGS (e.g. -D_FORTIFY_SOURCE=2) are honoured.
WERROR ?= 1
override CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra $(if $(filter 1,$(WERROR)),-Werror) -g $(OPT) -MMD -MP \
                    $(SANFLAGS) -Iruntime -I$(BUILD) $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS)
override LDFLAGS := $(SANFLAGS) $(LDFLAGS)
LDLIBS  := $(PKG_LIBS) -lm

RUNTIME_SRC := $(filter-out runtime/main.c,$(wildcard runtime/*.c))
RUNTIME_OBJ := $(RUNTIME_SRC:runtime/%.c=$(BUILD)/%.o) $(BUILD)/bundle_data.o $(BUILD)/openapi_data.o
STDLIB_LUA  := $(shell find stdlib -name '*.lua' | sort)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_HELPERS := $(BUILD)/mock_provider
BENCH_SRC    := $(filter-out bench/gen.c,$(wildcard bench/*.c))
BENCH_BIN    := $(BENCH_SRC:bench/%.c=$(BUILD)/bench_%) $(if $(wildcard bench/gen.c),$(BUILD)/gen)

TEND := $(if $(filter 1,$(SAN)),$(BUILD)/tend,bin/tend)

.PHONY: all deps test check-unit check-lua check-cli test-one lint-lua bench bench-peers demo clean install uninstall soak
all: $(TEND) $(TEST_HELPERS) $(BENCH_BIN)

$(BUILD)/%.o: runtime/%.c | $(BUILD)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/bundle_data.c: $(STDLIB_LUA) stdlib/embed.sh | $(BUILD)
	sh stdlib/embed.sh $(STDLIB_LUA) > $@.tmp && mv $@.tmp $@
$(BUILD)/bundle_data.o: $(BUILD)/bundle_data.c
	$(CC) $(CFLAGS) -c $< -o $@

# The HTTP API's description, served at /v1/openapi.json (YAML -> JSON at build time).
$(BUILD)/openapi_data.c: docs/openapi.yaml docs/openapi-embed.py | $(BUILD)
	/usr/bin/python3 docs/openapi-embed.py docs/openapi.yaml > $@.tmp && mv $@.tmp $@
$(BUILD)/openapi_data.o: $(BUILD)/openapi_data.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libtend.a: $(RUNTIME_OBJ)
	$(AR) rcs $@ $^

$(TEND): $(BUILD)/main.o $(BUILD)/libtend.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libtend.a | $(BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(shell pkg-config --cflags cmocka 2>/dev/null) -o $@ $< $(BUILD)/libtend.a \
	    $(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs cmocka 2>/dev/null)

$(BUILD)/mock_provider: tests/mock_provider.c | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

# Benchmarks link the runtime like the unit tests do; gen is plain C.
$(BUILD)/bench_%: bench/%.c $(BUILD)/libtend.a | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libtend.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/gen: bench/gen.c | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(BUILD):
	@mkdir -p $@ $@/tests

deps:
	@missing=""; \
	for d in $(DEPS); do \
	  kind=$${d%%:*}; rest=$${d#*:}; name=$${rest%%=*}; pkg=$${rest#*=}; \
	  case $$kind in \
	    pc) if [ $$name = lua5.4 ] && [ -n "$(LUA_PC)" ]; then ok=1; \
	        else pkg-config --exists $$name 2>/dev/null && ok=1 || ok=0; fi ;; \
	    cmd) command -v $$name >/dev/null 2>&1 && ok=1 || ok=0 ;; \
	    py) /usr/bin/python3 -c "import $$name" >/dev/null 2>&1 && ok=1 || ok=0 ;; \
	    perl) perl -M$$name -e 1 >/dev/null 2>&1 && ok=1 || ok=0 ;; \
	  esac; \
	  [ $$ok = 1 ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing tzdata ca-certificates; \
	else echo "make deps: all present"; fi

# One pass of every test against $(TEND). `make test` runs it twice: plain, then sanitized.
test-one: all $(UNIT_BIN)
	@sh tests/run.sh "$(BUILD)" "$(TEND)"

# luacheck over the journey library and the examples with the sandbox's
# globals (.luacheckrc): any warning fails.
lint-lua:
	luacheck --no-color --quiet --config .luacheckrc scripts examples

test: deps
	$(MAKE) lint-lua
	$(MAKE) test-one
	$(MAKE) SAN=1 test-one

# kill -9 under traffic, many times (make test runs it with 20).
soak: all
	@CRASH_KILLS=$${CRASH_KILLS:-200} TEND="$(TEND)" TEND_BUILD="$(BUILD)" sh tests/cli/crash_test.sh

bench: deps
	@$(MAKE) --no-print-directory deps DEPS="$(BENCH_DEPS)"
	$(MAKE) all
	@sh bench/run.sh

# BENCH_PEERS_JOBS=N (default 1000000); see bench/peers/run.sh
bench-peers: deps
	@$(MAKE) --no-print-directory deps DEPS="$(BENCH_DEPS) $(PEERS_DEPS)"
	$(MAKE) all
	@sh bench/peers/run.sh

demo: deps
	$(MAKE) all
	@sh examples/demo.sh

# Installation: PREFIX (default /usr/local) and DESTDIR (staging, for packagers).
PREFIX  ?= /usr/local
DESTDIR ?=
ifneq ($(words $(PREFIX)),1)
  ifneq ($(filter install uninstall,$(MAKECMDGOALS)),)
    $(error PREFIX must be one path without spaces (got '$(PREFIX)'))
  endif
endif
INSTALL_FILES := \
  bin/tend:$(PREFIX)/bin/tend:755 \
  docs/tend.1:$(PREFIX)/share/man/man1/tend.1:644 \
  examples/completions/tend.bash:$(PREFIX)/share/bash-completion/completions/tend:644 \
  examples/completions/_tend:$(PREFIX)/share/zsh/site-functions/_tend:644 \
  examples/tend.lua:$(PREFIX)/share/doc/tend/examples/tend.lua:644 \
  docs/openapi.yaml:$(PREFIX)/share/doc/tend/openapi.yaml:644 \
  docs/guide.md:$(PREFIX)/share/doc/tend/guide.md:644 \
  docs/lua-api.md:$(PREFIX)/share/doc/tend/lua-api.md:644 \
  docs/cli.md:$(PREFIX)/share/doc/tend/cli.md:644 \
  docs/http-api.md:$(PREFIX)/share/doc/tend/http-api.md:644 \
  docs/operations.md:$(PREFIX)/share/doc/tend/operations.md:644

install: bin/tend
	@for f in $(INSTALL_FILES); do \
	  src=$${f%%:*}; rest=$${f#*:}; dst=$${rest%%:*}; mode=$${rest##*:}; \
	  install -D -m $$mode "$$src" "$(DESTDIR)$$dst" || exit 1; echo "installed $(DESTDIR)$$dst"; \
	done
	@install -d "$(DESTDIR)$(PREFIX)/lib/systemd/system"
	@sed 's|/usr/local/bin/tend|$(PREFIX)/bin/tend|' examples/tend.service > "$(DESTDIR)$(PREFIX)/lib/systemd/system/tend.service"
	@chmod 644 "$(DESTDIR)$(PREFIX)/lib/systemd/system/tend.service"
	@echo "installed $(DESTDIR)$(PREFIX)/lib/systemd/system/tend.service"

uninstall:
	@for f in $(INSTALL_FILES); do rest=$${f#*:}; dst=$${rest%%:*}; rm -f "$(DESTDIR)$$dst"; done
	@rm -f "$(DESTDIR)$(PREFIX)/lib/systemd/system/tend.service"
	@rmdir "$(DESTDIR)$(PREFIX)/share/doc/tend/examples" "$(DESTDIR)$(PREFIX)/share/doc/tend" 2>/dev/null || true
	@echo "uninstalled tend from $(DESTDIR)$(PREFIX)"

clean:
	rm -rf build bin

-include $(wildcard $(BUILD)/*.d $(BUILD)/tests/*.d)
