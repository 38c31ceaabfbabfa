// Command kvwarden-story prefills "Once upon a time", streams a greedy continuation, releases the
// sequence and prints what it got as JSON: the Go client's end-to-end check (docs/clients.md).
//
//	kvwarden-story [-token TOKEN] [-tokens 20] ADDRESS SEQUENCE_ID
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"kvwarden/clients/go/kvwarden"
	"kvwarden/clients/go/kvwardenv1"
)

type story struct {
	Model        string   `json:"model"`
	PromptTokens uint32   `json:"promptTokens"`
	TokenIDs     []uint32 `json:"tokenIds"`
	Text         string   `json:"text"`
	FinishReason string   `json:"finishReason"`
	Released     bool     `json:"released"`
}

func main() {
	token := flag.String("token", "", "bearer token, for sidecars started with --auth-tokens")
	tokens := flag.Uint("tokens", 20, "tokens to generate")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: kvwarden-story [-token TOKEN] [-tokens N] ADDRESS SEQUENCE_ID")
		os.Exit(2)
	}
	result, err := tell(flag.Arg(0), flag.Arg(1), *token, uint32(*tokens))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(result)
}

func tell(address, sequenceID, token string, tokens uint32) (*story, error) {
	client, err := kvwarden.Dial(address, kvwarden.Options{Token: token})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	info, err := client.Info(ctx)
	if err != nil {
		return nil, err
	}
	prefill, err := client.Prefill(ctx, &kvwardenv1.PrefillRequest{SequenceId: sequenceID, Text: "Once upon a time"})
	if err != nil {
		return nil, err
	}
	result := &story{Model: info.GetModel().GetName(), PromptTokens: prefill.GetPromptTokens(), TokenIDs: []uint32{}}
	var text strings.Builder
	err = client.Decode(ctx, &kvwardenv1.DecodeRequest{SequenceId: sequenceID, MaxNewTokens: tokens}, func(response *kvwardenv1.DecodeResponse) error {
		result.TokenIDs = append(result.TokenIDs, response.GetTokenId())
		text.WriteString(response.GetText())
		result.FinishReason = response.GetFinishReason().String()
		return nil
	})
	if err != nil {
		return nil, err
	}
	result.Text = text.String()
	released, err := client.Release(ctx, sequenceID)
	if err != nil {
		return nil, err
	}
	result.Released = released.GetFound()
	return result, nil
}
