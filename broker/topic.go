package broker

import (
	"errors"
	"strings"
)

// ValidateTopic checks a topic name for publishing: not empty, no wildcards,
// no NUL.
func ValidateTopic(topic string) error {
	switch {
	case topic == "":
		return errors.New("empty topic")
	case strings.ContainsAny(topic, "+#"):
		return errors.New("topic " + topic + ": wildcards are not allowed in a topic name")
	case strings.ContainsRune(topic, 0):
		return errors.New("topic contains NUL")
	}
	return nil
}

// ValidateFilter checks a subscription filter: not empty, '+' and '#' only
// as whole levels, '#' only last; "$share/<group>/<filter>" needs a group
// name without wildcards and a valid filter.
func ValidateFilter(filter string) error {
	if group, f, ok := splitShared(filter); ok || strings.HasPrefix(filter, "$share/") {
		if !ok || group == "" || strings.ContainsAny(group, "+#") {
			return errors.New("filter " + filter + ": malformed shared subscription")
		}
		filter = f
	}
	if filter == "" {
		return errors.New("empty filter")
	}
	if strings.ContainsRune(filter, 0) {
		return errors.New("filter contains NUL")
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) > 1 {
			return errors.New("filter " + filter + ": wildcard must occupy a whole level")
		}
		if l == "#" && i != len(levels)-1 {
			return errors.New("filter " + filter + ": '#' must be the last level")
		}
	}
	return nil
}

// splitShared splits "$share/<group>/<filter>" into group and filter.
func splitShared(filter string) (group, f string, ok bool) {
	rest, found := strings.CutPrefix(filter, "$share/")
	if !found {
		return "", filter, false
	}
	group, f, found = strings.Cut(rest, "/")
	if !found || f == "" {
		return "", filter, false
	}
	return group, f, true
}

// MatchTopic reports whether a topic name matches a subscription filter
// (MQTT 3.1.1 section 4.7); a shared subscription "$share/<group>/<f>"
// matches what <f> matches. Filters starting with a wildcard do not match
// topics starting with '$'.
func MatchTopic(filter, topic string) bool {
	if _, f, ok := splitShared(filter); ok {
		filter = f
	}
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// "a/#" matches "a" too.
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// filterCovers reports whether every topic matched by sub is matched by
// rule (both filters, sub not shared).
func filterCovers(rule, sub string) bool {
	if strings.HasPrefix(sub, "$") != strings.HasPrefix(rule, "$") &&
		(strings.HasPrefix(rule, "+") || strings.HasPrefix(rule, "#")) {
		return false
	}
	r := strings.Split(rule, "/")
	s := strings.Split(sub, "/")
	for i, rl := range r {
		if rl == "#" {
			return true
		}
		if i >= len(s) {
			return false
		}
		switch sl := s[i]; {
		case sl == "#":
			return false
		case rl == "+":
		case rl != sl:
			return false
		}
	}
	return len(s) == len(r)
}
