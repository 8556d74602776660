package goproxy

import (
	"encoding/json"
	"fmt"
	"time"
)

// Info is the JSON document served for .info and @latest.
type Info struct {
	Version string
	Time    time.Time
	// Origin is passed through from upstreams that set it; modgate does not interpret it.
	Origin json.RawMessage `json:",omitempty"`
}

// ParseInfo decodes an .info document and checks it names a canonical version.
func ParseInfo(data []byte) (Info, error) {
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return Info{}, fmt.Errorf("decoding .info: %w", err)
	}
	if !IsCanonical(info.Version) {
		return Info{}, fmt.Errorf(".info version %q is not canonical", info.Version)
	}
	return info, nil
}
