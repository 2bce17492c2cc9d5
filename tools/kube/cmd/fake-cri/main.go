// Command fake-cri serves Kubernetes' own fake CRI runtime
// (k8s.io/cri-client/pkg/fake, the one kubemark's hollow node uses) on a unix
// socket, so a real kubelet can run pods on a machine where no container can
// run. It records the requests that say what a container would get (devices,
// mounts, env, CDI names) as JSON lines, for tests to read.
//
// This is the one emulated part of the local cluster: sandboxes and containers
// exist only in this process's memory, and a "running" container runs nothing.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	kubeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	fakeremote "k8s.io/cri-client/pkg/fake"
	"k8s.io/cri-client/pkg/util"
)

// recordingRuntime is the fake runtime with a log of the calls tests assert on.
type recordingRuntime struct {
	*fakeremote.RemoteRuntime
	mu  sync.Mutex
	out *os.File
}

type record struct {
	Method   string          `json:"method"`
	Request  json.RawMessage `json:"request"`
	Response json.RawMessage `json:"response,omitempty"`
	Error    string          `json:"error,omitempty"`
}

func (r *recordingRuntime) record(method string, req, resp proto.Message, err error) {
	line := record{Method: method}
	line.Request, _ = protojson.Marshal(req)
	if resp != nil && err == nil {
		line.Response, _ = protojson.Marshal(resp)
	}
	if err != nil {
		line.Error = err.Error()
	}
	data, merr := json.Marshal(line)
	if merr != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// One write per line on an O_APPEND file: a reader never sees half a record.
	_, _ = r.out.Write(append(data, '\n'))
}

func (r *recordingRuntime) RunPodSandbox(ctx context.Context, req *kubeapi.RunPodSandboxRequest) (*kubeapi.RunPodSandboxResponse, error) {
	resp, err := r.RemoteRuntime.RunPodSandbox(ctx, req)
	r.record("RunPodSandbox", req, resp, err)
	return resp, err
}

func (r *recordingRuntime) StopPodSandbox(ctx context.Context, req *kubeapi.StopPodSandboxRequest) (*kubeapi.StopPodSandboxResponse, error) {
	resp, err := r.RemoteRuntime.StopPodSandbox(ctx, req)
	r.record("StopPodSandbox", req, resp, err)
	return resp, err
}

func (r *recordingRuntime) CreateContainer(ctx context.Context, req *kubeapi.CreateContainerRequest) (*kubeapi.CreateContainerResponse, error) {
	resp, err := r.RemoteRuntime.CreateContainer(ctx, req)
	r.record("CreateContainer", req, resp, err)
	return resp, err
}

func (r *recordingRuntime) StartContainer(ctx context.Context, req *kubeapi.StartContainerRequest) (*kubeapi.StartContainerResponse, error) {
	resp, err := r.RemoteRuntime.StartContainer(ctx, req)
	r.record("StartContainer", req, resp, err)
	return resp, err
}

func (r *recordingRuntime) StopContainer(ctx context.Context, req *kubeapi.StopContainerRequest) (*kubeapi.StopContainerResponse, error) {
	resp, err := r.RemoteRuntime.StopContainer(ctx, req)
	r.record("StopContainer", req, resp, err)
	return resp, err
}

func (r *recordingRuntime) RemoveContainer(ctx context.Context, req *kubeapi.RemoveContainerRequest) (*kubeapi.RemoveContainerResponse, error) {
	resp, err := r.RemoteRuntime.RemoveContainer(ctx, req)
	r.record("RemoveContainer", req, resp, err)
	return resp, err
}

func main() {
	endpoint := flag.String("endpoint", "", "unix socket to serve the CRI runtime and image services on (unix:///path)")
	recordPath := flag.String("record", "", "file that gets one JSON line per recorded CRI call")
	flag.Parse()
	if *endpoint == "" || *recordPath == "" {
		fmt.Fprintln(os.Stderr, "fake-cri: -endpoint and -record are required")
		os.Exit(2)
	}
	out, err := os.OpenFile(*recordPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake-cri: %v\n", err)
		os.Exit(1)
	}
	fake := fakeremote.NewFakeRemoteRuntime()
	fake.RuntimeService.FakeStatus = &kubeapi.RuntimeStatus{
		Conditions: []*kubeapi.RuntimeCondition{
			{Type: kubeapi.RuntimeReady, Status: true},
			{Type: kubeapi.NetworkReady, Status: true},
		},
	}
	// kubelet refuses an image whose size is 0 ("Id or size of image ... is not set")
	fake.ImageService.SetFakeImageSize(16 << 20)
	runtime := &recordingRuntime{RemoteRuntime: fake, out: out}
	server := grpc.NewServer()
	kubeapi.RegisterRuntimeServiceServer(server, runtime)
	kubeapi.RegisterImageServiceServer(server, runtime)
	listener, err := util.CreateListener(*endpoint)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake-cri: listen on %s: %v\n", *endpoint, err)
		os.Exit(1)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		server.Stop()
	}()
	fmt.Fprintf(os.Stderr, "fake-cri: serving %s\n", *endpoint)
	if err := server.Serve(listener); err != nil {
		fmt.Fprintf(os.Stderr, "fake-cri: %v\n", err)
		os.Exit(1)
	}
}
