// Command benchgraph exists only for its module graph: `make bench` times
// `go mod download all` of these requirements (148 modules, pinned in go.mod and
// fully hashed in go.sum) through modgate and from a file:// GOPROXY. The imports
// make every requirement part of "all"; the program itself never runs.
package main

import (
	_ "github.com/aws/aws-sdk-go-v2/config"
	_ "github.com/aws/aws-sdk-go-v2/service/s3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
	_ "go.opentelemetry.io/otel"
	_ "go.opentelemetry.io/otel/sdk/trace"
	_ "google.golang.org/grpc"
	_ "k8s.io/client-go/kubernetes"
)

func main() {}
