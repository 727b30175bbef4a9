package guest

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// EnableUnit enables a systemd unit for the next boot, without starting it.
func EnableUnit(ctx context.Context, sh Shell, unit string) error {
	_, err := run(ctx, sh, "enable "+unit, "systemctl", "enable", unit)
	return err
}

// StartUnitUnlessSocket starts a systemd unit unless socket is there
// already (the unit is up, or socket-activated).
func StartUnitUnlessSocket(ctx context.Context, sh Shell, unit, socket string) error {
	_, err := script(ctx, sh, "start "+unit, `test -S "$1" || systemctl start "$2"`, socket, unit)
	return err
}

// LoadModules loads kernel modules (and what they depend on).
func LoadModules(ctx context.Context, sh Shell, modules ...string) error {
	if len(modules) == 0 {
		return nil
	}
	_, err := run(ctx, sh, "load "+strings.Join(modules, ", "), append([]string{"modprobe", "-a", "--"}, modules...)...)
	return err
}

// WaitAddress waits up to timeout for a network interface of the guest to
// have a global IPv4 address, as after a boot with its NIC. It polls in
// the guest, so that it costs one command, not one per try.
func WaitAddress(ctx context.Context, sh Shell, timeout time.Duration) error {
	tries := fmt.Sprint(max(int(timeout/(100*time.Millisecond)), 1))
	_, err := script(ctx, sh, fmt.Sprintf("wait %s for an address", timeout),
		`i=0; while [ "$i" -lt "$1" ]; do ip -4 -o addr show scope global | grep -q inet && exit 0; sleep 0.1; i=$((i+1)); done; ip -o addr; exit 1`, tries)
	return err
}

// AptInstall installs packages with apt-get, through the guest's own
// package sources.
func AptInstall(ctx context.Context, sh Shell, packages ...string) error {
	_, err := script(ctx, sh, "apt-get install "+strings.Join(packages, " "),
		`export DEBIAN_FRONTEND=noninteractive; apt-get -q -o Acquire::Retries=3 update && apt-get -q -y -o Acquire::Retries=3 install --no-install-recommends "$@"`,
		packages...)
	return err
}

// DpkgInstall installs .deb files that are in the guest already, then
// removes dir, where they were put.
func DpkgInstall(ctx context.Context, sh Shell, dir string, debs ...string) error {
	_, err := script(ctx, sh, "dpkg -i", `d=$1; shift; DEBIAN_FRONTEND=noninteractive dpkg -i "$@" && rm -rf -- "$d"`, append([]string{dir}, debs...)...)
	return err
}
