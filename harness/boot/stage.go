package boot

// Stage is where a board is on its way from off to containerd-ready.
type Stage string

const (
	StageOff        Stage = "off"
	StageImage      Stage = "image"      // base image built or found, overlay made
	StageQEMU       Stage = "qemu"       // QEMU process up, QMP answering
	StageKernel     Stage = "kernel"     // the guest kernel prints on the console
	StageSSH        Stage = "ssh"        // the guest's sshd accepted our key
	StageContainerd Stage = "containerd" // containerd installed and answering
	StageSnapshot   Stage = "snapshot"   // provisioned state saved for the next boards
	StageRestore    Stage = "restore"    // QEMU resumed a provisioned snapshot
	StageNetwork    Stage = "network"    // a NIC plugged in after a restore has an address
	StageReady      Stage = "ready"
	StageFailed     Stage = "failed"
)
