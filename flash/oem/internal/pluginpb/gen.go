package pluginpb

// The generated code is committed; regenerating needs protoc (Debian's
// protobuf-compiler), protoc-gen-go and protoc-gen-go-grpc on PATH.
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative adapter.proto
