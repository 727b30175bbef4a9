package images

import (
	"context"
	"fmt"
	"path"
	"strings"
)

// firstBoot is what a prepared image needs so that its first boot ends with
// sshd up and the harness key authorized, per image family. Sources for
// the Raspberry Pi OS conventions:
//   - `ssh` and userconf.txt on the boot partition: raspberrypi/documentation,
//     computers/configuration/headless.adoc (sshswitch.service enables sshd
//     when /boot/firmware/ssh exists; userconf.txt is "user:crypted-password").
//   - cloud-init files on the boot partition: raspberrypi/rpi-imager,
//     src/customization_generator.cpp (generateCloudInitUserData: "enable_ssh:
//     true", a users: entry with groups, shell, lock_passwd and
//     ssh_authorized_keys; network-config in netplan v2 form).
type firstBoot struct {
	info         *ImageInfo
	user         string
	passwordHash string
	key          string
	instance     string
	// pinnedHostKeys is set when socbox made the image's sshd host keys:
	// cloud-init must keep them.
	pinnedHostKeys bool
}

// piGroups are the groups Raspberry Pi Imager gives the first user.
const piGroups = "users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo"

// bootFiles are the files to put on the boot partition.
func (f firstBoot) bootFiles() map[string][]byte {
	switch f.info.Family {
	case FamilyRaspiOS:
		// Any content will do; an empty file would make go-diskfs leave a
		// cluster allocated to a 0-byte file, which fsck.vfat reports.
		files := map[string][]byte{"ssh": []byte("socbox: enable sshd on first boot\n")}
		if f.passwordHash != "" {
			files["userconf.txt"] = []byte(f.user + ":" + f.passwordHash + "\n")
		}
		return files
	case FamilyRaspiOSCloudInit:
		return map[string][]byte{
			"user-data":      []byte(f.cloudInitUserData()),
			"meta-data":      []byte("instance-id: socbox-" + f.instance + "\n"),
			"network-config": []byte(cloudInitNetworkConfig),
		}
	}
	return nil
}

func (f firstBoot) cloudInitUserData() string {
	var b strings.Builder
	b.WriteString("#cloud-config\n")
	b.WriteString("# written by socbox: key-only SSH for the test harness\n")
	b.WriteString("enable_ssh: true\n")
	// Keep root's authorized_keys as socbox wrote it.
	b.WriteString("disable_root: false\n")
	b.WriteString("users:\n")
	b.WriteString("- name: " + f.user + "\n")
	b.WriteString("  groups: " + piGroups + "\n")
	b.WriteString("  shell: /bin/bash\n")
	if f.passwordHash != "" {
		b.WriteString("  lock_passwd: false\n")
		b.WriteString("  passwd: " + f.passwordHash + "\n")
	} else {
		b.WriteString("  lock_passwd: true\n")
	}
	b.WriteString("  ssh_authorized_keys:\n")
	b.WriteString("    - " + f.key + "\n")
	b.WriteString("  sudo: ALL=(ALL) NOPASSWD:ALL\n")
	if f.passwordHash == "" {
		b.WriteString("ssh_pwauth: false\n")
	}
	if f.pinnedHostKeys {
		// cloud-init deletes host keys on first boot and makes its own;
		// socbox's are pinned by the harness.
		b.WriteString("ssh_deletekeys: false\n")
		b.WriteString("ssh_genkeytypes: []\n")
	}
	return b.String()
}

// cloudInitNetworkConfig brings up DHCP on any wired NIC: eth0 on `virt`,
// usb0 (QEMU's usb-net) on raspi3b.
const cloudInitNetworkConfig = `network:
  version: 2
  ethernets:
    wired:
      match:
        name: "e*"
      dhcp4: true
      optional: true
    usbnet:
      match:
        name: "usb*"
      dhcp4: true
      optional: true
`

// sshdDropIn lets root in with a key whatever the image's sshd_config
// says; it changes nothing about passwords.
const sshdDropIn = "# socbox: the test harness logs in as root with its key\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"

// rootFS queues the root filesystem changes: root's (and the first user's)
// authorized_keys, sshd enabled at boot, root login by key allowed, and
// sshd host keys when the image has none. It returns the public keys of
// the host keys it made, to pin.
func (f firstBoot) rootFS(ctx context.Context, e ext4Part, w *ext4Writer) ([]string, error) {
	info := f.info
	sshd := false
	for _, p := range []string{"/usr/sbin/sshd", "/sbin/sshd"} {
		_, n, err := e.stat(ctx, p)
		if err != nil {
			return nil, err
		}
		if n.exists {
			sshd = true
		}
	}
	if !sshd {
		return nil, &ImageFormatError{File: info.File, What: "the image has no OpenSSH server (/usr/sbin/sshd)",
			Fix: "socbox logs in over SSH: use an image with openssh-server (Raspberry Pi OS Lite and BeagleBone images have it)"}
	}
	keys := []byte(f.key + "\n")
	rootHome, err := e.resolve(ctx, "/root")
	if err != nil {
		return nil, err
	}
	if err := w.mkdirAll(ctx, rootHome, 0o700, 0, 0); err != nil {
		return nil, err
	}
	if err := w.mkdirAll(ctx, path.Join(rootHome, ".ssh"), 0o700, 0, 0); err != nil {
		return nil, err
	}
	if err := w.writeFile(ctx, path.Join(rootHome, ".ssh/authorized_keys"), keys, 0o600, 0, 0); err != nil {
		return nil, err
	}
	if info.FirstUser != "" && info.FirstUserHome != "" {
		home, err := e.resolve(ctx, info.FirstUserHome)
		if err != nil {
			return nil, err
		}
		if n, err := e.lstat(ctx, home); err == nil && n.kind == nodeDir {
			if err := w.mkdirAll(ctx, path.Join(home, ".ssh"), 0o700, info.FirstUserUID, info.FirstUserGID); err != nil {
				return nil, err
			}
			if err := w.writeFile(ctx, path.Join(home, ".ssh/authorized_keys"), keys, 0o600, info.FirstUserUID, info.FirstUserGID); err != nil {
				return nil, err
			}
		}
	}
	dir, n, err := e.stat(ctx, "/etc/ssh/sshd_config.d")
	if err != nil {
		return nil, err
	}
	if n.kind == nodeDir {
		if err := w.writeFile(ctx, path.Join(dir, "10-socbox.conf"), []byte(sshdDropIn), 0o644, 0, 0); err != nil {
			return nil, err
		}
	}
	// Enable sshd the way `systemctl enable ssh` would; Raspberry Pi OS's
	// own switch (the ssh file) does the same on first boot.
	for _, unit := range []string{"/lib/systemd/system/ssh.service", "/usr/lib/systemd/system/ssh.service"} {
		_, n, err := e.stat(ctx, unit)
		if err != nil {
			return nil, err
		}
		if n.exists {
			wants, err := e.resolve(ctx, "/etc/systemd/system/multi-user.target.wants")
			if err != nil {
				return nil, err
			}
			if err := w.symlink(ctx, path.Join(wants, "ssh.service"), unit); err != nil {
				return nil, err
			}
			break
		}
	}
	return f.hostKeys(ctx, e, w)
}

// String is for logs.
func (f firstBoot) String() string {
	return fmt.Sprintf("%s first boot for %s", f.info.Family, f.user)
}
