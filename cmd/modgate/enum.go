package main

import (
	"fmt"
	"slices"
	"strings"
)

// checkEnum refuses a flag value outside allowed, naming the allowed values.
func checkEnum[T ~string](flagName, value string, allowed []T) error {
	if slices.Contains(allowed, T(value)) {
		return nil
	}
	return fmt.Errorf("%s %q: want one of %s", flagName, value, joinEnum(allowed))
}

// enumList splits a comma-separated flag value and checks every element.
func enumList[T ~string](flagName, value string, allowed []T) ([]T, error) {
	var out []T
	for _, v := range splitList(value) {
		if err := checkEnum(flagName, v, allowed); err != nil {
			return nil, err
		}
		out = append(out, T(v))
	}
	return out, nil
}

func joinEnum[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
