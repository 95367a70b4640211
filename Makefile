# huststore: build and install without cargo-deb (the .deb is "cargo deb", see README.md).
#
#   make                       # cargo build --release
#   sudo make install          # binary, confs, units, man pages, logrotate file
#   sudo make uninstall        # all of it but the confs under /etc/huststore
#
# DESTDIR stages the install elsewhere (packaging); PREFIX (default /usr) moves the binary
# and the man pages, and the units are rewritten to run the binary from there. The confs go
# to SYSCONFDIR/huststore (default /etc/huststore) and are never overwritten: an edited conf
# survives a reinstall. BIN names the binary to install (default: the release build).

PREFIX      ?= /usr
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
SYSCONFDIR  ?= /etc
UNITDIR     ?= /lib/systemd/system
LOGROTATEDIR ?= $(SYSCONFDIR)/logrotate.d
CARGO       ?= cargo
BIN         ?= target/release/huststore

CONFDIR = $(SYSCONFDIR)/huststore
UNITS   = huststore.service huststore-mq.service
CONFS   = huststore.conf hustmq.conf

.PHONY: all build install uninstall

all: build

build:
	$(CARGO) build --release --locked

target/release/huststore:
	$(CARGO) build --release --locked

install: $(BIN)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(CONFDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(LOGROTATEDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/huststore
	for conf in $(CONFS); do \
		if [ -e $(DESTDIR)$(CONFDIR)/$$conf ]; then \
			echo "keeping $(DESTDIR)$(CONFDIR)/$$conf"; \
		else \
			install -m 0644 init/$$conf $(DESTDIR)$(CONFDIR)/$$conf; \
		fi; \
	done
	for unit in $(UNITS); do \
		sed -e 's#/usr/bin/huststore#$(BINDIR)/huststore#g' \
		    -e 's#/etc/huststore/#$(CONFDIR)/#g' \
			init/$$unit > $(DESTDIR)$(UNITDIR)/$$unit && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$unit; \
	done
	sed -e 's#/usr/bin/huststore#$(BINDIR)/huststore#g' \
	    -e 's#/etc/huststore/#$(CONFDIR)/#g' \
		init/huststore.logrotate > $(DESTDIR)$(LOGROTATEDIR)/huststore
	chmod 0644 $(DESTDIR)$(LOGROTATEDIR)/huststore
	gzip -9n -c man/huststore.8 > $(DESTDIR)$(MANDIR)/man8/huststore.8.gz
	gzip -9n -c man/huststore.conf.5 > $(DESTDIR)$(MANDIR)/man5/huststore.conf.5.gz
	@if [ -z "$(DESTDIR)" ] && ! getent passwd huststore >/dev/null; then \
		echo "note: create the service user: adduser --system --group --no-create-home --home /var/lib/huststore huststore"; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl daemon-reload; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/huststore
	for unit in $(UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$$unit; done
	rm -f $(DESTDIR)$(LOGROTATEDIR)/huststore
	rm -f $(DESTDIR)$(MANDIR)/man8/huststore.8.gz $(DESTDIR)$(MANDIR)/man5/huststore.conf.5.gz
	@echo "kept $(DESTDIR)$(CONFDIR) (your confs), /var/lib/huststore and /var/log/huststore"
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl daemon-reload; \
	fi
