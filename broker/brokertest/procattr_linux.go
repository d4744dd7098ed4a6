package brokertest

import "syscall"

// sysProcAttr has the kernel kill Mosquitto if the test binary dies
// without running its cleanups.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
