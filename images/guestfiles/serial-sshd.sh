#!/bin/bash
# socbox: sshd on a serial port, for boards whose network device QEMU cannot
# save with the machine state (raspi3b's usb-net). The host reaches sshd
# through the serial port instead, so a restored board answers at once.
#
# A serial line has no connect or hang-up, so the host asks for each
# session: this loop announces itself ("socbox-ssh?") and starts
# `sshd -i` on the line only when the host answers ("socbox-ssh!"), so sshd
# never writes its banner to nobody. Any other line (the host sends a few
# newlines first, which also ends an sshd left from an earlier connection
# with "bad packet length") makes it announce again.
#
# Usage: serial-sshd.sh DEVICE [SSHD [ARGS...]]   (default sshd: /usr/sbin/sshd)
set -u
tty=$1
shift
[ $# -gt 0 ] || set -- /usr/sbin/sshd
pidfile=${SOCBOX_SERIAL_PIDFILE:-/run/socbox-serial-sshd.pid}
stty -F "$tty" raw -echo -echoe -echok -echonl -icanon -isig -iexten -ixon -ixoff -crtscts clocal -hupcl || exit 1
exec 3<>"$tty"
partial=
while :; do
	[ -n "$partial" ] || printf 'socbox-ssh?\n' >&3
	line=
	if IFS= read -r -t 1 line <&3; then
		line=$partial$line
		partial=
		line=${line%$'\r'}
		[ "$line" = "socbox-ssh!" ] || continue
		"$@" -i -o ClientAliveInterval=10 -o ClientAliveCountMax=3 <&3 >&3 2>/dev/null &
		echo $! >"$pidfile"
		wait $!
		rm -f "$pidfile"
	else
		# A timeout keeps what was read of an unfinished line.
		partial=$partial$line
		[ ${#partial} -le 64 ] || partial=
	fi
done
