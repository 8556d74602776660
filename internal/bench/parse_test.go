package bench

import (
	"reflect"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		out     string
		want    wrkResult
		wantErr bool
	}{
		{
			name: "report line among wrk's own output",
			out: "Running 4s test @ https://127.0.0.1:1\n  2 threads and 64 connections\n" +
				"MODGATE-BENCH requests=20000 bytes=10000000 duration_us=4000000 p50_us=1500 p99_us=20000 status_errors=0 socket_errors=0\n",
			want: wrkResult{Requests: 20000, Bytes: 10000000, Duration: 4 * time.Second, P50: 1500 * time.Microsecond,
				P99: 20 * time.Millisecond, ReqPerSec: 5000, MBPerSec: 2.5},
		},
		{
			name: "errors are carried",
			out:  "MODGATE-BENCH requests=10 bytes=1 duration_us=1000000 p50_us=1 p99_us=2 status_errors=3 socket_errors=4\n",
			want: wrkResult{Requests: 10, Bytes: 1, Duration: time.Second, P50: time.Microsecond, P99: 2 * time.Microsecond,
				StatusErrs: 3, SocketErrs: 4, ReqPerSec: 10, MBPerSec: 1e-6},
		},
		{name: "no report line", out: "Requests/sec: 100\n", wantErr: true},
		{name: "malformed number", out: "MODGATE-BENCH requests=x\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseWrk([]byte(tt.out))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("parseWrk = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseGoBench(t *testing.T) {
	t.Parallel()
	out := `goos: linux
BenchmarkDecide/default/hit-2   	 1000000	      1200 ns/op	       491.0 p50-ns	      2133 p99-ns	     48 B/op	       2 allocs/op
BenchmarkDecide/default/hit-2   	 1000000	      1100 ns/op	       480.0 p50-ns	      1900 p99-ns	     48 B/op	       2 allocs/op
BenchmarkWriterThroughput     	  100000	     26000 ns/op	         1.5 p50-record-ms	        46.28 p99-record-ms	     37229 in-postgres/s
PASS
ok  	github.com/modgate/modgate/internal/policy	3.1s
`
	got := parseGoBench([]byte(out))
	want := map[string][]map[string]float64{
		"BenchmarkDecide/default/hit": {
			{"ns/op": 1200, "p50-ns": 491, "p99-ns": 2133, "B/op": 48, "allocs/op": 2},
			{"ns/op": 1100, "p50-ns": 480, "p99-ns": 1900, "B/op": 48, "allocs/op": 2},
		},
		"BenchmarkWriterThroughput": {
			{"ns/op": 26000, "p50-record-ms": 1.5, "p99-record-ms": 46.28, "in-postgres/s": 37229},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseGoBench =\n%v\nwant\n%v", got, want)
	}
	if s := series(got["BenchmarkDecide/default/hit"], "p99-ns", 1e-3); !reflect.DeepEqual(s, []float64{2.133, 1.9}) {
		t.Errorf("series = %v", s)
	}
}

func TestParseH2Load(t *testing.T) {
	t.Parallel()
	ok := `starting benchmark...
spawning thread #0: 8 total client(s). 307 total requests
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Application protocol: h2
finished in 8.00s, 10412.88 req/s, 3.32MB/s
requests: 83303 total, 83431 started, 83303 done, 83303 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 83303 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 26.55MB (27839012) total, 1.16MB (1214223) headers (space savings 94.50%), 24.62MB (25817400) data
                     min         max         mean         sd        +/- sd
time for request:      123us     45.12ms      1.22ms      1.01ms    87.21%
`
	tests := []struct {
		name    string
		out     string
		want    wrkResult
		wantErr bool
	}{
		{
			name: "summary",
			out:  ok,
			want: wrkResult{Requests: 83303, Bytes: 27839012, Duration: 8 * time.Second, Mean: 1220 * time.Microsecond,
				ReqPerSec: 83303.0 / 8, MBPerSec: 27839012.0 / 8 / 1e6},
		},
		{
			name: "failures are carried",
			out: "finished in 1.00s, 10.00 req/s, 1KB/s\n" +
				"requests: 20 total, 20 started, 20 done, 10 succeeded, 10 failed, 0 errored, 0 timeout\n" +
				"status codes: 10 2xx, 0 3xx, 10 4xx, 0 5xx\n",
			want: wrkResult{Requests: 10, Duration: time.Second, StatusErrs: 10, SocketErrs: 10, ReqPerSec: 10},
		},
		{name: "no summary", out: "No protocol negotiated. Aborted\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseH2Load([]byte(tt.out))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("parseH2Load = %+v, want %+v", got, tt.want)
			}
		})
	}
}
