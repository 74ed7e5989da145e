// Package provider is the virtual-kubelet provider: every ECU of a vehicle
// config is a node, and a pod bound to an ECU node is a firmware deployment
// carried out by package flash.
//
// It must never erase firmware when a pod is deleted, and GetPods reports
// only pods it holds, so virtual-kubelet's dangling-pod cleanup can never
// touch an ECU.
package provider
