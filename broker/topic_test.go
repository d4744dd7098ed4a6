package broker_test

import (
	"testing"

	"github.com/delen-edge/delen/broker"
)

func TestMatchTopic(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		want          bool
	}{
		{"delen/t1/requests", "delen/t1/requests", true},
		{"delen/+/requests", "delen/t1/requests", true},
		{"delen/+/requests", "delen/t1/results", false},
		{"delen/#", "delen/t1/requests", true},
		{"delen/#", "delen", true},
		{"delen/+", "delen", false},
		{"delen/+/requests", "delen/t1/requests/x", false},
		{"delen/t1/requests", "delen/t1", false},
		{"#", "delen/t1", true},
		{"#", "$SYS/broker/uptime", false},
		{"+/broker/uptime", "$SYS/broker/uptime", false},
		{"$SYS/#", "$SYS/broker/uptime", true},
		{"$share/agents/delen/+/requests", "delen/t1/requests", true},
		{"$share/agents/delen/+/requests", "delen/t1/results", false},
		{"delen//x", "delen//x", true},
		{"delen/+/x", "delen//x", true},
	} {
		if got := broker.MatchTopic(c.filter, c.topic); got != c.want {
			t.Errorf("MatchTopic(%q, %q) = %t; want %t", c.filter, c.topic, got, c.want)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	for _, f := range []string{"a", "a/+/b", "#", "a/#", "+", "$share/g/a/+", "/a//b"} {
		if err := broker.ValidateFilter(f); err != nil {
			t.Errorf("ValidateFilter(%q) = %v; want nil", f, err)
		}
	}
	for _, f := range []string{"", "a/#/b", "a+", "a/b#", "$share/g", "$share//a", "$share/g+/a", "$share/g/", "a\x00b"} {
		if err := broker.ValidateFilter(f); err == nil {
			t.Errorf("ValidateFilter(%q) = nil; want an error", f)
		}
	}
	for _, topic := range []string{"", "a/+", "a/#"} {
		if err := broker.ValidateTopic(topic); err == nil {
			t.Errorf("ValidateTopic(%q) = nil; want an error", topic)
		}
	}
}
