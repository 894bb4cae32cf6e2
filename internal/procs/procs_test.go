package procs

import "testing"

func TestChoose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		configured int
		env        string
		available  int
		want       Choice
	}{
		{"one CPU stays one", 0, "", 1, Choice{Procs: 1, Available: 1, Source: SourceAuto}},
		{"two CPUs leave one", 0, "", 2, Choice{Procs: 1, Available: 2, Source: SourceAuto}},
		{"eight CPUs leave one", 0, "", 8, Choice{Procs: 7, Available: 8, Source: SourceAuto}},
		{"config wins over automatic", 4, "", 2, Choice{Procs: 4, Available: 2, Source: SourceConfig}},
		{"config may ask for all", 8, "", 8, Choice{Procs: 8, Available: 8, Source: SourceConfig}},
		{"environment wins over config", 4, "3", 3, Choice{Procs: 3, Available: 3, Source: SourceEnv}},
		{"environment wins over automatic", 0, "2", 2, Choice{Procs: 2, Available: 2, Source: SourceEnv}},
		{"blank environment is unset", 0, " ", 4, Choice{Procs: 3, Available: 4, Source: SourceAuto}},
		{"environment the runtime ignores", 0, "many", 4, Choice{Procs: 3, Available: 4, Source: SourceAuto}},
		{"zero in the environment is ignored", 2, "0", 4, Choice{Procs: 2, Available: 4, Source: SourceConfig}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Choose(tt.configured, tt.env, tt.available); got != tt.want {
				t.Errorf("Choose(%d, %q, %d) = %+v, want %+v", tt.configured, tt.env, tt.available, got, tt.want)
			}
		})
	}
}
