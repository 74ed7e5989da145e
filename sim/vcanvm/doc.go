// Package vcanvm runs Go tests against the Linux kernel's own CAN stack:
// vcan interfaces, CAN_RAW and CAN_ISOTP sockets, can-utils. Development and
// CI machines have no AF_CAN, so the tests run in a qemu microVM booted from
// Debian's kernel package.
//
// A test calls Run first. On the host, Run builds the calling package's
// tests as a static binary, boots the VM with it in the initramfs, runs the
// same test there with vcan0 (classic CAN, MTU 16) and vcan1 (CAN FD, MTU
// 72) up, and passes or fails by what the VM reports. Inside the VM, Run
// returns false and the test body runs.
//
// A test that needs more calls RunWith with Options: Files are put into
// the initramfs under FilesDir (a kubeconfig, an OCI layout), and Forward
// lets the VM connect to host loopback ports at HostAddr:port. For the
// latter the VM gets a virtio network card on qemu's user network with
// restrict=on, so that it reaches nothing else and nothing reaches it; qemu
// carries each guest connection to the host port through the image's
// static busybox nc, whose connection is to 127.0.0.1. A server whose
// certificate names 127.0.0.1 is verified under that name
// (tls.Config.ServerName, a kubeconfig's tls-server-name). The network
// modules load only in such runs.
//
// The image is made from three Debian packages that .ci/install-vcanvm.sh
// downloads into $XDG_CACHE_HOME/ecu-kubelet/vcanvm/debs (default
// ~/.cache): linux-image-*-amd64 (kernel and the modules can, can-raw,
// can-isotp, can-dev, vcan and virtio-net's), busybox-static (init, insmod,
// ip, poweroff, and nc on the host side of forwarded ports) and
// can-utils (candump, cansend, isotpsend, isotprecv, with the host's shared
// libraries they need). The packages are unpacked, never installed. The
// image is cached beside them, keyed by the packages and the init script,
// and rebuilt when either changes.
//
// The VM runs under TCG (-machine accel=tcg): with KVM the Debian kernel hung.
// On an idle 2-core machine it boots to vcan0 and vcan1 up in about 4.5 s
// (1.8 s of the kernel's own clock); a loaded host can triple that.
// Its init prints a marker line with a per-run nonce and the test binary's
// exit status on the serial console and powers off; the host reads the
// status from that line, so a test's output can never pass for it.
//
// vcanvm never installs packages, needs no root at test time and touches
// nothing outside its cache and the test's temporary directory. Where qemu
// or the packages are missing, Run skips with what to install; with CI=true
// it fails instead.
package vcanvm
