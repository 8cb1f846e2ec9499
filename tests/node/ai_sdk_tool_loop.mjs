// The Vercel AI SDK on its default OpenAI provider (the Responses API): generateText with one
// tool() and stopWhen: stepCountIs(2), against the server at LOCALAI_BASE_URL (".../v1") and the
// model LOCALAI_MODEL. Prints one JSON line: each step's tool calls, tool results, text and
// finish reason, and the arguments the tool's execute() was called with.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, tool } from "ai";
import { z } from "zod";

const openai = createOpenAI({ baseURL: process.env.LOCALAI_BASE_URL, apiKey: "unused" });
const executed = [];
const getWeather = tool({
  description: "The current weather in a city",
  inputSchema: z.object({ city: z.string().max(40).describe("The city") }),
  execute: async ({ city }) => {
    executed.push({ city });
    return `It is sunny and 24 degrees in ${city}.`;
  },
});

const result = await generateText({
  model: openai(process.env.LOCALAI_MODEL),
  tools: { get_weather: getWeather },
  stopWhen: stepCountIs(2),
  // A 270M model is not relied on to choose the tool: the first step requires it.
  prepareStep: ({ stepNumber }) => (stepNumber === 0 ? { toolChoice: "required" } : { toolChoice: "auto" }),
  maxOutputTokens: 64,
  temperature: 0,
  prompt: "What is the weather in Paris?",
});

console.log(JSON.stringify({
  executed,
  text: result.text,
  steps: result.steps.map((step) => ({
    finishReason: step.finishReason,
    text: step.text,
    toolCalls: step.toolCalls.map(({ toolCallId, toolName, input }) => ({ toolCallId, toolName, input })),
    toolResults: step.toolResults.map(({ toolCallId, output }) => ({ toolCallId, output })),
  })),
}));
