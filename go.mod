module github.com/ecu-kubelet/ecu-kubelet

go 1.26.8

require (
	github.com/spf13/cobra v1.10.2
	go.einride.tech/can v0.17.0
	go.uber.org/zap v1.28.0
	golang.org/x/sys v0.31.0
)

require gopkg.in/yaml.v3 v3.0.1

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/klauspost/compress v1.20.3
	github.com/pierrec/lz4/v4 v4.1.33
	github.com/spf13/pflag v1.0.9 // indirect
	github.com/ulikunitz/xz v0.5.17
	go.uber.org/multierr v1.10.0 // indirect
	golang.org/x/net v0.38.0 // indirect
	golang.org/x/sync v0.11.0 // indirect
)
