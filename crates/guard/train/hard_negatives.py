#!/usr/bin/env python3
"""Benign hard negatives for sluice-guard's classifier (written for it, Apache-2.0 like the crate).

The classifier is a logistic regression over hashed word and character n-grams, so it learns
vocabulary: texts that merely *talk about* prompts, system prompts, roles, overrides, admin
passwords or prompt injection score high although nobody is attacking anything. This script
composes benign texts of six kinds from hand-written parts (templates, slots, sentences):

  code_prompt         code and configs that build LLM calls: messages arrays with a system
                      message, LangChain / LlamaIndex templates, Anthropic `system=`, prompt
                      files, tool schemas, eval harness configs (sometimes with a question)
  api_docs            documentation prose about chat APIs: system, messages, roles,
                      temperature, tool use, instructions fields, prompt caching, best practice
  security_writing    people writing *about* prompt injection and jailbreaks (questions, blog
                      paragraphs, post-mortems, policies, threat models, course notes, red-team
                      findings), attacks described in reported speech, in several languages
  strong_instruction  harmless user turns that sound like overrides: a user correcting their
                      own earlier request, harmless role-play set-ups, formatting rules
  doc_imperative      documents an agent fetches (role "tool") with imperatives to *human*
                      readers: shipping e-mails, READMEs, safety manuals, notices, ToS,
                      changelogs, support tickets, chat logs
  code_words          code, configs and CLI help with words like ignore, override, system,
                      prompt, admin, sudo, root, password, reveal, bypass, disable

Everything is label 0. Deterministic (fixed seed); no two texts are equal.

    python3 crates/guard/train/hard_negatives.py
"""
import json, os, random, re, textwrap
from collections import Counter

here = os.path.dirname(os.path.abspath(__file__))
SEED = 20240917
TARGET = {"code_prompt": 180, "api_docs": 100, "security_writing": 180,
          "strong_instruction": 150, "doc_imperative": 150, "code_words": 140}


def fill(tpl, **kw):
    """Replace @@name@@ placeholders (braces are left alone: code is full of them)."""
    def sub(m):
        return str(kw[m.group(1)])
    return re.sub(r"@@(\w+)@@", sub, tpl)


def dedent(s):
    return textwrap.dedent(s).strip("\n")


def pick(rng, xs, k):
    return rng.sample(xs, k)


# ================================================================ 1. code_prompt
# (system prompt, a user message that fits it)
TASKS = [
 ("You are a helpful assistant that summarises legal contracts in plain English for small-business owners. Flag any clause about termination, liability or automatic renewal.",
  "Summarise the termination section of the attached lease."),
 ("You are a translation assistant. Translate the user's text from English into German and keep product names and code snippets unchanged.",
  "Our new dashboard lets you export reports as CSV or PDF."),
 ("You are a support-ticket classifier. Reply with exactly one label from: billing, bug, feature_request, account, other.",
  "I was charged twice for my March subscription."),
 ("You are an expert PostgreSQL developer. Given a question and the schema below, write a single read-only SQL query (SELECT only).",
  "Which five customers spent the most in 2023?"),
 ("You are a patient maths tutor for secondary-school students. Guide the student step by step and ask a question before revealing the final answer.",
  "How do I solve 3x + 7 = 22?"),
 ("You are a friendly cooking assistant. Suggest recipes that use only the ingredients the user lists and mention the cooking time.",
  "I have eggs, spinach, feta and some old bread."),
 ("You are a helpful assistant that writes concise release notes from a list of merged pull requests, grouped into Features, Fixes and Chores.",
  "PR list: #412 add dark mode, #415 fix CSV export encoding, #418 bump eslint."),
 ("You are a medical-terminology explainer for patients. Explain terms in simple words and suggest discussing personal treatment decisions with their doctor.",
  "What does 'benign essential hypertension' mean?"),
 ("You are a code reviewer for a Go codebase. Point out bugs, data races and unchecked errors; keep each comment to one or two sentences.",
  "Please review the diff below."),
 ("You are an assistant for the Riverside Public Library. Help patrons find books and explain loan periods, fees and opening hours.",
  "Can I renew an e-book loan?"),
 ("You are a helpful assistant that extracts invoice fields (vendor, invoice_date, total, vat_number) and returns them as a JSON object.",
  "INVOICE 2024-118, Nordlicht GmbH, 14.03.2024, total 1,249.00 EUR, USt-IdNr. DE123456789"),
 ("You are a writing coach. Give feedback on clarity, structure and tone; do not rewrite the whole text.",
  "Here is the first paragraph of my cover letter."),
 ("You are a travel planner. Build day-by-day itineraries with realistic travel times between stops and one rest break per day.",
  "Four days in Lisbon in October, we like food markets and tiles."),
 ("You are a helpful assistant that turns meeting transcripts into a list of action items, each with an owner and a due date.",
  "Transcript of the Monday product sync follows."),
 ("You are a sentiment analyser for product reviews. Answer positive, negative or mixed, followed by a one-sentence reason.",
  "Battery life is great but the strap broke after a week."),
 ("You are an HR policy assistant for Acme Corp. Answer using only the handbook excerpts in the context and say so when they do not cover the question.",
  "How many days of parental leave do I get?"),
 ("You are a Socratic tutor for introductory physics. Answer questions with guiding questions first.",
  "Why does a heavier object not fall faster?"),
 ("You are a helpful assistant that rewrites technical error messages so that non-technical users understand them and know what to try next.",
  "ECONNRESET while uploading attachment"),
 ("You are a regular-expression expert. Return the pattern first, then a short explanation of each part.",
  "Match UK postcodes like SW1A 1AA."),
 ("You are a customer-service agent for Velo Werkstatt, a bike shop. Be warm and brief, and hand refunds over 200 EUR to a human colleague.",
  "My new brake pads squeak, is that normal?"),
 ("You are a data analyst. Given a CSV preview, suggest three charts that would explain the data and say why.",
  "date,region,units,revenue\n2024-01-01,North,120,3400"),
 ("You are a helpful assistant that writes alt text for product images on an e-commerce site, under 125 characters.",
  "Image: blue ceramic mug with a wooden handle on a white table."),
 ("You are a conversation partner for a learner of Italian at A2 level. Use simple sentences and correct mistakes gently at the end of each reply.",
  "Ieri io sono andato al mercato e ho comprato tre mela."),
 ("You are a scientific-abstract summariser. Produce exactly three sentences: aim, method, main result.",
  "Abstract: We investigate the effect of soil salinity on..."),
 ("You are a helpful assistant that tags news articles with up to five topics from this taxonomy: politics, economy, science, sport, culture, health, technology.",
  "The city council approved a new tram line on Tuesday..."),
 ("You are a commit-message writer. Follow the Conventional Commits format and keep the subject line under 72 characters.",
  "diff --git a/src/cache.rs b/src/cache.rs ..."),
 ("You are a kind assistant helping older adults set up their smartphones. Use short numbered steps and no jargon.",
  "How do I make the text bigger on my phone?"),
 ("You are a fitness coach for beginners. Suggest short workouts and remind users to warm up and stop if something hurts.",
  "I have 20 minutes and no equipment."),
 ("You are a helpful assistant that answers questions about the Parcelly REST API using only the reference documentation provided in the context.",
  "How do I paginate the /shipments endpoint?"),
 ("You are a legal research assistant. Cite the section number for every statement and say when the documents do not cover a question.",
  "Does the tenant need written consent to sublet?"),
 ("You are a poetry assistant that writes haiku about the seasons.",
  "Something about the first frost."),
 ("You are a helpful assistant that drafts polite replies to guest e-mails for the front desk of Hotel Alpenblick.",
  "Guest asks whether late check-out at 2 pm is possible."),
 ("You are a unit-test generator for TypeScript functions. Use Vitest and cover edge cases.",
  "export function slugify(s: string): string { ... }"),
 ("You are an accessibility auditor. Review the HTML snippet and list WCAG 2.2 issues with a severity for each.",
  "<img src=\"hero.png\"><div onclick=\"buy()\">Buy</div>"),
 ("You are a gardening helper for balcony gardens in temperate climates.",
  "What can I still plant in a north-facing balcony box in September?"),
 ("You are a helpful assistant that normalises postal addresses into street, city, postcode and country fields.",
  "12 rue des Lilas 69003 lyon FR"),
 ("You are a quiz master. Ask one multiple-choice question about European geography at a time and keep score.",
  "Let's play, I'm ready."),
 ("You are a financial-literacy explainer. Explain concepts such as compound interest with worked examples; do not give personalised investment advice.",
  "What is the difference between APR and APY?"),
 ("You are a helpful assistant that converts natural-language dates into ISO 8601, assuming the Europe/Berlin time zone.",
  "next Thursday at half past three"),
 ("You are a product-description writer for an online furniture shop. Keep a calm, Scandinavian tone and mention materials.",
  "Oak side table, 45 cm, oiled finish."),
 ("You are a Kubernetes troubleshooting assistant. Ask for kubectl output when you need it and explain each command you suggest.",
  "My pod is stuck in CrashLoopBackOff."),
 ("You are a résumé reviewer. Suggest stronger verbs and measurable results, one bullet at a time.",
  "Responsible for managing social media accounts."),
 ("You are a helpful assistant that classifies incoming e-mails as spam or not_spam and gives a confidence between 0 and 1.",
  "Subject: Your parcel could not be delivered, pay 1.99 to reschedule"),
 ("You are a lab-safety assistant for a university chemistry teaching lab. Refer students to the lab technician for anything not covered in the safety sheet.",
  "Can I pour dilute acetic acid down the sink?"),
 ("You are an assistant that answers questions about the city council meeting minutes provided below. Quote the relevant passage.",
  "What was decided about the bike lanes on Elm Street?"),
 ("You are a helpful assistant that explains Rust compiler errors to developers coming from Python.",
  "error[E0502]: cannot borrow `v` as mutable because it is also borrowed as immutable"),
 ("You are a wine-pairing assistant for a restaurant menu. Suggest one wine by the glass per dish.",
  "Dish: mushroom risotto with parmesan."),
 ("You are a helpful assistant that writes SQL migrations for MySQL 8 from a description of the schema change.",
  "Add a nullable 'archived_at' timestamp to the projects table."),
 ("You are a children's storyteller. Write gentle bedtime stories of about 300 words for ages 4 to 7.",
  "A story about a hedgehog who is afraid of the dark."),
 ("You are a customs-tariff assistant. Suggest the most likely HS code for the product description and explain your choice.",
  "Stainless steel insulated water bottle, 750 ml."),
]

MODELS_OAI = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "gpt-3.5-turbo", "o4-mini"]
MODELS_ANT = ["claude-3-5-sonnet-latest", "claude-3-5-haiku-latest", "claude-sonnet-4-20250514", "claude-3-opus-20240229", "claude-opus-4-1"]
MODELS_ANY = MODELS_OAI + MODELS_ANT + ["mistral-large-latest", "llama3.1:8b", "gemini-1.5-pro", "qwen2.5:14b"]
TEMPS = ["0", "0.0", "0.2", "0.3", "0.5", "0.7", "1.0"]
MAXTOK = ["256", "512", "800", "1024", "2048", "4096"]
FN_NAMES = ["ask", "run_prompt", "classify", "summarize", "get_completion", "call_llm", "answer", "chat", "generate", "complete"]
VAR_SYS = ["SYSTEM_PROMPT", "system_prompt", "SYSTEM", "INSTRUCTIONS", "BASE_PROMPT", "sys_msg"]

QUESTIONS_AFTER = [
 "Why does this return 400?",
 "Why does this return a 400 Bad Request? The key is definitely set.",
 "The call works, but the model ignores the system message half the time. Is my message order wrong?",
 "How do I add the previous turns of the conversation to this?",
 "Is it better to put these instructions in the system prompt or in the first user message?",
 "This works, but responses take 8-10 seconds. Should I switch to streaming?",
 "How do I unit-test this without actually calling the API?",
 "I get 'messages: roles must alternate between user and assistant'. What does that mean here?",
 "The output is sometimes not valid JSON. How can I make it reliable?",
 "How can I count the tokens of the system prompt before sending the request?",
 "Can someone explain why temperature 0 still gives me slightly different answers?",
 "What's the cleanest way to load the system prompt from a file instead of hard-coding it?",
 "The tool is never called even when the question clearly needs it. What am I missing?",
 "Getting a 401 in CI but not locally, any idea?",
 "How do I make this async so I can run 50 of these in parallel?",
 "Is there a way to cache the long system prompt so we don't pay for it on every call?",
 "It returns a 429 after about 20 requests. How should I add retries with backoff?",
 "Why is `content` None in the response sometimes?",
 "How would you restructure this so the prompt text is versioned separately from the code?",
 "Code review welcome, this is my first time using the SDK.",
]
QUESTIONS_BEFORE = [
 "Here is my current setup:", "Quick question about this snippet.", "I'm calling the API like this:",
 "This is what I have so far:", "Our service builds the request like this:", "Minimal repro:",
 "Context: we're prototyping an internal tool.", "From our repo (names changed):",
]


def _py_str(s):
    return json.dumps(s, ensure_ascii=False)


def cp_py_openai(rng):
    sys_, user = rng.choice(TASKS)
    tpl = rng.choice([
        '''
        from openai import OpenAI

        client = OpenAI()
        @@VS@@ = @@SYS@@


        def @@FN@@(text: str) -> str:
            resp = client.chat.completions.create(
                model="@@MODEL@@",
                temperature=@@T@@,
                messages=[
                    {"role": "system", "content": @@VS@@},
                    {"role": "user", "content": text},
                ],
            )
            return resp.choices[0].message.content


        if __name__ == "__main__":
            print(@@FN@@(@@USER@@))
        ''',
        '''
        import openai

        messages = [
            {"role": "system", "content": @@SYS@@},
            {"role": "user", "content": @@USER@@},
        ]
        completion = openai.chat.completions.create(model="@@MODEL@@", messages=messages, max_tokens=@@MAX@@)
        messages.append({"role": "assistant", "content": completion.choices[0].message.content})
        print(completion.choices[0].message.content)
        ''',
        '''
        # prompts.py
        @@VS@@ = (
            @@SYS@@
        )

        def build_messages(history, question):
            msgs = [{"role": "system", "content": @@VS@@}]
            msgs.extend(history)
            msgs.append({"role": "user", "content": question})
            return msgs
        ''',
        '''
        async def @@FN@@(client, text):
            r = await client.chat.completions.create(
                model="@@MODEL@@",
                messages=[{"role": "system", "content": @@SYS@@},
                          {"role": "user", "content": text}],
                temperature=@@T@@,
                response_format={"type": "json_object"},
            )
            return json.loads(r.choices[0].message.content)
        ''',
    ])
    return fill(dedent(tpl), SYS=_py_str(sys_), USER=_py_str(user), VS=rng.choice(VAR_SYS),
                FN=rng.choice(FN_NAMES), MODEL=rng.choice(MODELS_OAI), T=rng.choice(TEMPS), MAX=rng.choice(MAXTOK))


def cp_py_anthropic(rng):
    sys_, user = rng.choice(TASKS)
    tpl = rng.choice([
        '''
        import anthropic

        client = anthropic.Anthropic()
        message = client.messages.create(
            model="@@MODEL@@",
            max_tokens=@@MAX@@,
            system=@@SYS@@,
            messages=[{"role": "user", "content": @@USER@@}],
        )
        print(message.content[0].text)
        ''',
        '''
        from anthropic import Anthropic

        @@VS@@ = @@SYS@@

        def @@FN@@(question: str) -> str:
            client = Anthropic()
            resp = client.messages.create(
                model="@@MODEL@@",
                max_tokens=@@MAX@@,
                temperature=@@T@@,
                system=[{"type": "text", "text": @@VS@@, "cache_control": {"type": "ephemeral"}}],
                messages=[{"role": "user", "content": question}],
            )
            return "".join(b.text for b in resp.content if b.type == "text")
        ''',
        '''
        with client.messages.stream(
            model="@@MODEL@@",
            max_tokens=@@MAX@@,
            system=@@SYS@@,
            messages=[{"role": "user", "content": @@USER@@}],
        ) as stream:
            for text in stream.text_stream:
                print(text, end="", flush=True)
        ''',
    ])
    return fill(dedent(tpl), SYS=_py_str(sys_), USER=_py_str(user), VS=rng.choice(VAR_SYS),
                FN=rng.choice(FN_NAMES), MODEL=rng.choice(MODELS_ANT), T=rng.choice(TEMPS), MAX=rng.choice(MAXTOK))


def cp_py_langchain(rng):
    sys_, user = rng.choice(TASKS)
    var = rng.choice(["question", "input", "text", "query", "ticket"])
    tpl = rng.choice([
        '''
        from langchain_core.prompts import ChatPromptTemplate
        from langchain_openai import ChatOpenAI

        prompt = ChatPromptTemplate.from_messages([
            ("system", @@SYS@@),
            ("human", "{@@VAR@@}"),
        ])
        llm = ChatOpenAI(model="@@MODEL@@", temperature=@@T@@)
        chain = prompt | llm
        result = chain.invoke({"@@VAR@@": @@USER@@})
        print(result.content)
        ''',
        '''
        from langchain.prompts import PromptTemplate

        template = """@@SYSRAW@@

        Context:
        {context}

        Question: {@@VAR@@}
        Answer:"""
        prompt = PromptTemplate(template=template, input_variables=["context", "@@VAR@@"])
        ''',
        '''
        from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

        prompt = ChatPromptTemplate.from_messages(
            [
                ("system", @@SYS@@),
                MessagesPlaceholder(variable_name="chat_history"),
                ("human", "{@@VAR@@}"),
            ]
        )
        ''',
    ])
    return fill(dedent(tpl), SYS=_py_str(sys_), SYSRAW=sys_, USER=_py_str(user), VAR=var,
                MODEL=rng.choice(MODELS_OAI), T=rng.choice(TEMPS))


def cp_py_llamaindex(rng):
    sys_, user = rng.choice(TASKS)
    tpl = rng.choice([
        '''
        from llama_index.core import PromptTemplate, VectorStoreIndex, SimpleDirectoryReader

        qa_tmpl = PromptTemplate(
            "@@SYSRAW@@\\n"
            "Context information is below.\\n"
            "---------------------\\n"
            "{context_str}\\n"
            "---------------------\\n"
            "Given the context information, answer the query.\\n"
            "Query: {query_str}\\n"
            "Answer: "
        )
        index = VectorStoreIndex.from_documents(SimpleDirectoryReader("@@DIR@@").load_data())
        engine = index.as_query_engine(text_qa_template=qa_tmpl, similarity_top_k=@@K@@)
        print(engine.query(@@USER@@))
        ''',
        '''
        from llama_index.core.chat_engine import CondensePlusContextChatEngine

        chat_engine = CondensePlusContextChatEngine.from_defaults(
            retriever=index.as_retriever(similarity_top_k=@@K@@),
            system_prompt=@@SYS@@,
        )
        response = chat_engine.chat(@@USER@@)
        ''',
    ])
    return fill(dedent(tpl), SYS=_py_str(sys_), SYSRAW=sys_.replace('"', '\\"'), USER=_py_str(user),
                DIR=rng.choice(["./docs", "data/handbook", "./contracts", "corpus/"]), K=rng.choice([2, 3, 4, 5, 8]))


TOOLS = [
 ("get_weather", "Get the current weather for a city.", {"city": ("string", "City name, e.g. Berlin"), "unit": ("string", "celsius or fahrenheit")}, ["city"]),
 ("search_orders", "Look up a customer's orders by e-mail address.", {"email": ("string", "Customer e-mail"), "limit": ("integer", "Max results")}, ["email"]),
 ("create_calendar_event", "Create an event in the user's calendar.", {"title": ("string", "Event title"), "start": ("string", "ISO 8601 start time"), "duration_minutes": ("integer", "Length of the event")}, ["title", "start"]),
 ("lookup_invoice", "Fetch an invoice by its number.", {"invoice_number": ("string", "For example INV-2024-0042")}, ["invoice_number"]),
 ("convert_currency", "Convert an amount between two currencies at today's rate.", {"amount": ("number", "Amount to convert"), "from": ("string", "ISO code"), "to": ("string", "ISO code")}, ["amount", "from", "to"]),
 ("run_sql", "Run a read-only SQL query against the analytics replica.", {"query": ("string", "A single SELECT statement")}, ["query"]),
 ("get_stock_level", "Return the stock level of a product in a warehouse.", {"sku": ("string", "Product SKU"), "warehouse": ("string", "Warehouse code")}, ["sku"]),
 ("book_meeting_room", "Book a meeting room for a time slot.", {"room": ("string", "Room name"), "from": ("string", "Start time"), "to": ("string", "End time")}, ["room", "from", "to"]),
 ("search_docs", "Full-text search over the product documentation.", {"q": ("string", "Search terms"), "top_k": ("integer", "Number of passages")}, ["q"]),
 ("translate_text", "Translate text into a target language.", {"text": ("string", "Text to translate"), "target_lang": ("string", "BCP 47 code")}, ["text", "target_lang"]),
]


def _tool_schema(tool, style):
    name, desc, props, req = tool
    p = {k: {"type": t, "description": d} for k, (t, d) in props.items()}
    if style == "openai":
        return {"type": "function", "function": {"name": name, "description": desc,
                "parameters": {"type": "object", "properties": p, "required": req}}}
    return {"name": name, "description": desc, "input_schema": {"type": "object", "properties": p, "required": req}}


def cp_tools(rng):
    sys_, _ = rng.choice(TASKS)
    tools = pick(rng, TOOLS, rng.choice([1, 1, 2, 3]))
    style = rng.choice(["openai", "anthropic", "json"])
    if style == "json":
        body = {"model": rng.choice(MODELS_OAI), "messages": [{"role": "system", "content": "You are a helpful assistant. Use the tools when the user asks about live data."},
                {"role": "user", "content": rng.choice(["What's the weather in Porto tomorrow?", "Where is my order? My e-mail is ana@example.com", "Book room Aurora from 10 to 11", "How much is 250 USD in EUR?", "Is SKU B-1192 in stock in Leeds?"])}],
                "tools": [_tool_schema(t, "openai") for t in tools], "tool_choice": "auto"}
        return json.dumps(body, indent=2, ensure_ascii=False)
    schemas = json.dumps([_tool_schema(t, style) for t in tools], indent=2, ensure_ascii=False)
    if style == "openai":
        return fill(dedent('''
        tools = @@SCHEMAS@@

        response = client.chat.completions.create(
            model="@@MODEL@@",
            messages=[{"role": "system", "content": @@SYS@@}, {"role": "user", "content": question}],
            tools=tools,
            tool_choice="auto",
        )
        for call in response.choices[0].message.tool_calls or []:
            args = json.loads(call.function.arguments)
            result = DISPATCH[call.function.name](**args)
        '''), SCHEMAS=schemas, MODEL=rng.choice(MODELS_OAI), SYS=_py_str(sys_))
    return fill(dedent('''
    tools = @@SCHEMAS@@

    resp = client.messages.create(
        model="@@MODEL@@",
        max_tokens=@@MAX@@,
        system=@@SYS@@,
        tools=tools,
        messages=[{"role": "user", "content": question}],
    )
    if resp.stop_reason == "tool_use":
        block = next(b for b in resp.content if b.type == "tool_use")
        output = run_tool(block.name, block.input)
    '''), SCHEMAS=schemas, MODEL=rng.choice(MODELS_ANT), MAX=rng.choice(MAXTOK), SYS=_py_str(sys_))


def cp_ts(rng):
    sys_, user = rng.choice(TASKS)
    tpl = rng.choice([
        '''
        import OpenAI from "openai";

        const client = new OpenAI();
        const @@VS@@ = @@SYS@@;

        export async function @@FN@@(input: string): Promise<string> {
          const res = await client.chat.completions.create({
            model: "@@MODEL@@",
            temperature: @@T@@,
            messages: [
              { role: "system", content: @@VS@@ },
              { role: "user", content: input },
            ],
          });
          return res.choices[0].message.content ?? "";
        }
        ''',
        '''
        import Anthropic from "@anthropic-ai/sdk";

        const anthropic = new Anthropic();

        const msg = await anthropic.messages.create({
          model: "@@MODEL2@@",
          max_tokens: @@MAX@@,
          system: @@SYS@@,
          messages: [{ role: "user", content: @@USER@@ }],
        });
        console.log(msg.content);
        ''',
        '''
        import { generateText } from "ai";
        import { openai } from "@ai-sdk/openai";

        const { text } = await generateText({
          model: openai("@@MODEL@@"),
          system: @@SYS@@,
          prompt: @@USER@@,
        });
        ''',
        '''
        const res = await fetch("https://api.openai.com/v1/chat/completions", {
          method: "POST",
          headers: {
            "Content-Type": "application/json",
            Authorization: `Bearer ${process.env.OPENAI_API_KEY}`,
          },
          body: JSON.stringify({
            model: "@@MODEL@@",
            messages: [
              { role: "system", content: @@SYS@@ },
              { role: "user", content: userInput },
            ],
          }),
        });
        const data = await res.json();
        ''',
        '''
        type ChatMessage = { role: "system" | "user" | "assistant"; content: string };

        export function buildMessages(history: ChatMessage[], question: string): ChatMessage[] {
          return [
            { role: "system", content: @@SYS@@ },
            ...history.slice(-@@K@@),
            { role: "user", content: question },
          ];
        }
        ''',
    ])
    return fill(dedent(tpl), SYS=_py_str(sys_), USER=_py_str(user), VS=rng.choice(["SYSTEM_PROMPT", "systemPrompt", "SYSTEM"]),
                FN=rng.choice(["ask", "classifyTicket", "summarize", "complete", "runPrompt"]), MODEL=rng.choice(MODELS_OAI),
                MODEL2=rng.choice(MODELS_ANT), T=rng.choice(TEMPS), MAX=rng.choice(MAXTOK), K=rng.choice([6, 10, 20]))


def cp_go(rng):
    sys_, user = rng.choice(TASKS)
    tpl = rng.choice([
        '''
        req := openai.ChatCompletionRequest{
        	Model: "@@MODEL@@",
        	Messages: []openai.ChatCompletionMessage{
        		{Role: openai.ChatMessageRoleSystem, Content: @@SYS@@},
        		{Role: openai.ChatMessageRoleUser, Content: input},
        	},
        	Temperature: @@T@@,
        }
        resp, err := client.CreateChatCompletion(ctx, req)
        if err != nil {
        	return "", fmt.Errorf("chat completion: %w", err)
        }
        return resp.Choices[0].Message.Content, nil
        ''',
        '''
        type Message struct {
        	Role    string `json:"role"`
        	Content string `json:"content"`
        }

        const systemPrompt = @@SYS@@

        func buildRequest(q string) ([]byte, error) {
        	body := map[string]any{
        		"model":      "@@MODEL2@@",
        		"max_tokens": @@MAX@@,
        		"system":     systemPrompt,
        		"messages":   []Message{{Role: "user", Content: q}},
        	}
        	return json.Marshal(body)
        }
        ''',
    ])
    return fill(dedent(tpl), SYS=_py_str(sys_), MODEL=rng.choice(MODELS_OAI), MODEL2=rng.choice(MODELS_ANT),
                T=rng.choice(["0", "0.2", "0.7"]), MAX=rng.choice(MAXTOK))


def cp_rust(rng):
    sys_, user = rng.choice(TASKS)
    tpl = rng.choice([
        '''
        let body = serde_json::json!({
            "model": "@@MODEL@@",
            "temperature": @@T@@,
            "messages": [
                {"role": "system", "content": @@SYS@@},
                {"role": "user", "content": question},
            ]
        });
        let resp: serde_json::Value = client
            .post("https://api.openai.com/v1/chat/completions")
            .bearer_auth(&api_key)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ''',
        '''
        #[derive(Serialize)]
        struct Message<'a> {
            role: &'a str,
            content: &'a str,
        }

        const SYSTEM_PROMPT: &str = @@SYS@@;

        fn messages(user: &str) -> Vec<Message<'_>> {
            vec![
                Message { role: "system", content: SYSTEM_PROMPT },
                Message { role: "user", content: user },
            ]
        }
        ''',
    ])
    return fill(dedent(tpl), SYS=_py_str(sys_), MODEL=rng.choice(MODELS_OAI), T=rng.choice(["0.0", "0.2", "0.7"]))


def cp_java(rng):
    sys_, user = rng.choice(TASKS)
    tpl = rng.choice([
        '''
        String body = """
            {
              "model": "@@MODEL@@",
              "messages": [
                {"role": "system", "content": @@SYS@@},
                {"role": "user", "content": "%s"}
              ]
            }
            """.formatted(escapeJson(userInput));

        HttpRequest request = HttpRequest.newBuilder()
            .uri(URI.create("https://api.openai.com/v1/chat/completions"))
            .header("Authorization", "Bearer " + System.getenv("OPENAI_API_KEY"))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body))
            .build();
        ''',
        '''
        ChatLanguageModel model = OpenAiChatModel.builder()
            .apiKey(System.getenv("OPENAI_API_KEY"))
            .modelName("@@MODEL@@")
            .temperature(@@T@@)
            .build();

        interface Assistant {
            @SystemMessage(@@SYS@@)
            String chat(@UserMessage String message);
        }

        Assistant assistant = AiServices.create(Assistant.class, model);
        ''',
    ])
    return fill(dedent(tpl), SYS=_py_str(sys_), MODEL=rng.choice(MODELS_OAI), T=rng.choice(["0.0", "0.3", "0.7"]))


def cp_csharp(rng):
    sys_, user = rng.choice(TASKS)
    tpl = rng.choice([
        '''
        ChatClient client = new(model: "@@MODEL@@", apiKey: Environment.GetEnvironmentVariable("OPENAI_API_KEY"));

        List<ChatMessage> messages =
        [
            new SystemChatMessage(@@SYS@@),
            new UserChatMessage(@@USER@@),
        ];

        ChatCompletion completion = await client.CompleteChatAsync(messages);
        Console.WriteLine(completion.Content[0].Text);
        ''',
        '''
        var options = new ChatCompletionsOptions
        {
            DeploymentName = "@@MODEL@@",
            Temperature = @@T@@f,
            Messages =
            {
                new ChatRequestSystemMessage(@@SYS@@),
                new ChatRequestUserMessage(input),
            },
        };
        Response<ChatCompletions> response = await azureClient.GetChatCompletionsAsync(options);
        ''',
    ])
    return fill(dedent(tpl), SYS=_py_str(sys_), USER=_py_str(user), MODEL=rng.choice(MODELS_OAI), T=rng.choice(["0", "0.2", "0.7"]))


def cp_ruby(rng):
    sys_, user = rng.choice(TASKS)
    return fill(dedent(rng.choice([
        '''
        client = OpenAI::Client.new(access_token: ENV.fetch("OPENAI_API_KEY"))

        response = client.chat(
          parameters: {
            model: "@@MODEL@@",
            messages: [
              { role: "system", content: @@SYS@@ },
              { role: "user", content: @@USER@@ }
            ],
            temperature: @@T@@
          }
        )
        puts response.dig("choices", 0, "message", "content")
        ''',
        '''
        class TicketClassifier
          SYSTEM_PROMPT = @@SYS@@

          def call(text)
            llm.chat(messages: [
              { role: "system", content: SYSTEM_PROMPT },
              { role: "user", content: text }
            ]).completion
          end
        end
        ''',
    ])), SYS=_py_str(sys_), USER=_py_str(user), MODEL=rng.choice(MODELS_OAI), T=rng.choice(TEMPS))


def cp_curl(rng):
    sys_, user = rng.choice(TASKS)
    if rng.random() < 0.5:
        body = {"model": rng.choice(MODELS_OAI), "messages": [{"role": "system", "content": sys_}, {"role": "user", "content": user}]}
        if rng.random() < 0.5:
            body["temperature"] = float(rng.choice(["0", "0.2", "0.7"]))
        return "curl https://api.openai.com/v1/chat/completions \\\n  -H \"Content-Type: application/json\" \\\n  -H \"Authorization: Bearer $OPENAI_API_KEY\" \\\n  -d @- <<'EOF'\n" + json.dumps(body, indent=2, ensure_ascii=False) + "\nEOF"
    body = {"model": rng.choice(MODELS_ANT), "max_tokens": int(rng.choice(MAXTOK)), "system": sys_, "messages": [{"role": "user", "content": user}]}
    return "curl https://api.anthropic.com/v1/messages \\\n  -H \"x-api-key: $ANTHROPIC_API_KEY\" \\\n  -H \"anthropic-version: 2023-06-01\" \\\n  -H \"content-type: application/json\" \\\n  -d @- <<'EOF'\n" + json.dumps(body, indent=2, ensure_ascii=False) + "\nEOF"


def cp_ollama(rng):
    sys_, user = rng.choice(TASKS)
    return fill(dedent(rng.choice([
        '''
        import ollama

        reply = ollama.chat(
            model="@@MODEL@@",
            messages=[
                {"role": "system", "content": @@SYS@@},
                {"role": "user", "content": @@USER@@},
            ],
            options={"temperature": @@T@@},
        )
        print(reply["message"]["content"])
        ''',
        '''
        # Modelfile
        FROM @@MODEL@@
        PARAMETER temperature @@T@@
        PARAMETER num_ctx 8192
        SYSTEM """@@SYSRAW@@"""
        ''',
        '''
        import litellm

        resp = litellm.completion(
            model="@@PROVIDER@@",
            messages=[{"role": "system", "content": @@SYS@@},
                      {"role": "user", "content": @@USER@@}],
        )
        ''',
        '''
        from pydantic_ai import Agent

        agent = Agent(
            "@@PROVIDER@@",
            system_prompt=@@SYS@@,
        )
        result = agent.run_sync(@@USER@@)
        print(result.output)
        ''',
    ])), SYS=_py_str(sys_), SYSRAW=sys_, USER=_py_str(user), MODEL=rng.choice(["llama3.1:8b", "qwen2.5:7b", "mistral", "gemma2:9b", "phi3:mini"]),
        T=rng.choice(["0.1", "0.2", "0.4", "0.8"]), PROVIDER=rng.choice(["openai:gpt-4o-mini", "anthropic:claude-3-5-haiku-latest", "gpt-4o", "ollama/llama3.1"]))


def cp_prompt_file(rng):
    sys_, user = rng.choice(TASKS)
    name = rng.choice(["ticket_triage", "contract_summary", "sql_helper", "tutor", "release_notes", "invoice_extract", "translator", "faq_bot"])
    tpl = rng.choice([
        '''
        # prompts/@@NAME@@.yaml
        name: @@NAME@@
        version: @@VER@@
        model: @@MODEL@@
        temperature: @@T@@
        system: |
          @@SYSRAW@@
        user_template: |
          {{input}}
        ''',
        '''
        ---
        name: @@NAME@@
        description: @@DESC@@
        model:
          api: chat
          configuration:
            type: azure_openai
            azure_deployment: @@MODEL@@
          parameters:
            max_tokens: @@MAX@@
        sample:
          question: @@USER@@
        ---
        system:
        @@SYSRAW@@

        user:
        {{question}}
        ''',
        '''
        ---
        model: googleai/gemini-1.5-flash
        config:
          temperature: @@T@@
        input:
          schema:
            text: string
        ---
        {{role "system"}}
        @@SYSRAW@@
        {{role "user"}}
        {{text}}
        ''',
        '''
        {# templates/@@NAME@@_system.j2 #}
        @@SYSRAW@@
        {% if locale %}Answer in {{ locale }}.{% endif %}
        Today's date is {{ today }}.
        ''',
    ])
    return fill(dedent(tpl), NAME=name, VER=rng.choice(["1", "2", "3", "0.4.1"]), MODEL=rng.choice(MODELS_OAI if "azure" in tpl else MODELS_ANY), T=rng.choice(TEMPS),
                SYSRAW=sys_, MAX=rng.choice(MAXTOK), USER=_py_str(user),
                DESC=rng.choice(["Prompt used by the support dashboard", "Internal helper prompt", "Summarisation prompt for the contracts team", "Tutoring prompt, reviewed by the pedagogy team"]))


def cp_eval(rng):
    sys_, user = rng.choice(TASKS)
    tpl = rng.choice([
        '''
        # promptfooconfig.yaml
        description: "@@NAME@@ regression suite"
        prompts:
          - id: system-v@@VER@@
            raw: |
              [
                {"role": "system", "content": @@SYS@@},
                {"role": "user", "content": "{{input}}"}
              ]
        providers:
          - openai:@@MODEL@@
          - anthropic:messages:@@MODEL2@@
        tests:
          - vars:
              input: @@USER@@
            assert:
              - type: llm-rubric
                value: follows the system prompt and stays on topic
              - type: latency
                threshold: 5000
        ''',
        '''
        # evals/registry/evals/@@NAME@@.yaml
        @@NAME@@:
          id: @@NAME@@.dev.v@@VER@@
          metrics: [accuracy]
        @@NAME@@.dev.v@@VER@@:
          class: evals.elsuite.basic.match:Match
          args:
            samples_jsonl: @@NAME@@/samples.jsonl
        # samples.jsonl lines look like:
        # {"input": [{"role": "system", "content": @@SYS@@}, {"role": "user", "content": @@USER@@}], "ideal": "..."}
        ''',
        '''
        {"messages": [{"role": "system", "content": @@SYS@@}, {"role": "user", "content": @@USER@@}, {"role": "assistant", "content": "@@IDEAL@@"}]}
        ''',
        '''
        # inspect_ai task
        @task
        def @@NAME@@():
            return Task(
                dataset=json_dataset("data/@@NAME@@.jsonl"),
                solver=[system_message(@@SYS@@), generate()],
                scorer=model_graded_qa(),
            )
        ''',
    ])
    return fill(dedent(tpl), NAME=rng.choice(["ticket_triage", "sql_gen", "contract_qa", "tutor_math", "translate_de", "extract_invoice", "faq"]),
                VER=rng.choice(["1", "2", "3"]), SYS=_py_str(sys_), USER=_py_str(user), MODEL=rng.choice(MODELS_OAI), MODEL2=rng.choice(MODELS_ANT),
                IDEAL=rng.choice(["billing", "SELECT name FROM customers ORDER BY total DESC LIMIT 5;", "Sure! Let's start with the first step.", "positive", "Danke für Ihre Nachricht."]))


CP_MAKERS = [cp_py_openai, cp_py_openai, cp_py_anthropic, cp_py_anthropic, cp_py_langchain, cp_py_llamaindex, cp_tools, cp_tools,
             cp_ts, cp_ts, cp_go, cp_rust, cp_java, cp_csharp, cp_ruby, cp_curl, cp_curl, cp_ollama, cp_prompt_file, cp_prompt_file, cp_eval]


def make_code_prompt(rng):
    code = rng.choice(CP_MAKERS)(rng)
    r = rng.random()
    fence = rng.random() < 0.5
    if fence:
        code = "```\n" + code + "\n```"
    if r < 0.30:
        text = code + "\n\n" + rng.choice(QUESTIONS_AFTER)
    elif r < 0.45:
        text = rng.choice(QUESTIONS_BEFORE) + "\n\n" + code + "\n\n" + rng.choice(QUESTIONS_AFTER)
    else:
        text = code
    return text, "en", "user"


# ================================================================ 2. api_docs
API_NAMES = ["the Messages API", "the Chat Completions endpoint", "the chat API", "our inference API", "the `/v1/chat` endpoint",
             "the Responses API", "the gateway's chat route", "the completions service", "the Assistants API", "the model API"]
DOC_TOPICS = {
 "system": (["System prompts", "The `system` parameter", "Setting the assistant's behaviour", "System messages", "Using a system prompt"], [
  "The system prompt sets the assistant's behaviour for the whole conversation: its role, tone, the format of its answers and the limits of the task.",
  "Pass the system prompt in the top-level `system` parameter rather than as a message; the `messages` array only accepts the `user` and `assistant` roles.",
  "In {api}, the first message may have the role `system`; it is applied before any user input and stays in effect for every later turn.",
  "A system prompt is optional. Without one, the model behaves as a general-purpose assistant.",
  "The `system` field accepts either a string or an array of text blocks, which lets you mark a long, stable prefix for caching.",
  "Keep instructions that should hold for every request in the system prompt and put per-request data in the user turn.",
  "Changing the system prompt between turns is allowed, but the model only sees the version sent with the current request.",
  "System prompts count toward the input tokens of every request, so a 2,000-token system prompt is billed on each call unless it is cached.",
  "Giving the model a role in the system prompt, such as a tax accountant or a support agent for a specific product, tends to improve the relevance and tone of its answers.",
 ]),
 "messages": (["The `messages` array", "Roles", "Multi-turn conversations", "Message format", "Conversation state"], [
  "`messages` is an ordered list of turns. Each turn is an object with a `role` (`user` or `assistant`) and `content`.",
  "The API is stateless: to continue a conversation, send the full history of earlier user and assistant turns with every request.",
  "Consecutive turns with the same role are merged into one turn before they reach the model.",
  "The final message is usually a `user` turn. If the last turn is an `assistant` turn, the model continues that text instead of starting a new reply; this is called prefilling.",
  "`content` can be a plain string or an array of content blocks (text, image, document, tool_result).",
  "Roles tell the model who said what: `system` for the developer's instructions, `user` for the end user, `assistant` for earlier model replies and `tool` for results of function calls.",
  "When the history grows beyond the context window, trim or summarise the oldest turns; the request fails with a 400 error if the input is too long.",
  "A 400 error that mentions alternating roles usually means two user messages were sent in a row without an assistant reply between them.",
 ]),
 "sampling": (["Temperature and sampling", "`temperature`, `top_p` and `top_k`", "Controlling randomness", "Sampling parameters"], [
  "`temperature` controls randomness. Values near 0 make output more deterministic, which suits classification and extraction; higher values suit brainstorming.",
  "The default temperature is 1.0. The accepted range is 0.0 to 1.0 on {api}, and 0.0 to 2.0 on some other providers.",
  "We recommend changing either `temperature` or `top_p`, not both.",
  "Even at temperature 0 the output is not guaranteed to be identical across calls, because of batching and floating-point effects on the server.",
  "`max_tokens` is the maximum number of tokens to generate. The model may stop earlier; the response's `stop_reason` tells you why.",
  "`stop_sequences` is a list of strings; generation stops when the model produces one of them, and the matched sequence is returned in the response.",
  "`seed` requests best-effort reproducibility; compare the `system_fingerprint` field to see whether the backend changed between calls.",
 ]),
 "tools": (["Tool use", "Function calling", "Defining tools", "Handling tool calls"], [
  "To let the model call your code, describe each tool with a `name`, a `description` and a JSON Schema for its input in the `tools` parameter.",
  "When the model decides to use a tool, the response contains a `tool_use` block and `stop_reason` is `tool_use`. Run the tool yourself and send the result back in a `tool_result` block.",
  "Write tool descriptions as you would for a new colleague: what the tool does, when to use it and what each parameter means. Detailed descriptions are the biggest factor in correct tool use.",
  "`tool_choice` controls whether the model may, must or must not call a tool: `auto`, `any`, `none`, or a specific tool by name.",
  "Tool results are treated as data returned to the model. Validate arguments before executing anything with side effects, and ask the user to confirm irreversible actions.",
  "Parallel tool calls may be returned in one response; return all results in a single user turn, each with the matching `tool_use_id`.",
  "If a tool fails, return the error message as the tool result with `is_error: true` so the model can recover or explain the failure.",
 ]),
 "instructions": (["The `instructions` field", "Instructions and developer messages", "Developer instructions"], [
  "The `instructions` parameter inserts a system (or developer) message at the start of the model's context for this response only.",
  "When you chain responses with `previous_response_id`, instructions from the earlier response are not carried over; send them again on each request.",
  "The `developer` role replaces the `system` role on newer models. Messages with the `developer` role carry the application's instructions, which the model prioritises over the user's messages.",
  "Use `instructions` for high-level behaviour (tone, goals, format) and put examples and reference material in the input.",
  "Instructions given in the `instructions` field take precedence over instructions in the `input` messages.",
 ]),
 "caching": (["Prompt caching", "Caching long prompts", "Reducing cost with caching"], [
  "Prompt caching lets you reuse a long, stable prefix of a request, such as a system prompt, tool definitions or a large document, across calls.",
  "Mark the end of the cacheable prefix with `cache_control: {\"type\": \"ephemeral\"}`. Everything before the marker is cached for five minutes, refreshed on each hit.",
  "Caching only works if the prefix is byte-for-byte identical, so put variable content such as the user's question or the current date after the cached blocks.",
  "Cache reads are billed at a fraction of the normal input price; cache writes cost slightly more than regular input tokens.",
  "The usage object reports `cache_creation_input_tokens` and `cache_read_input_tokens` so you can check that caching is working.",
  "Prompts shorter than the minimum cacheable length (1,024 tokens on most models) are processed normally, without an error.",
 ]),
 "best": (["Best practices for system prompts", "Writing effective system prompts", "Prompt design guidelines", "Tips for prompt engineering"], [
  "Be clear and direct: state the task, the audience and the desired output format in the first few sentences of the system prompt.",
  "Explain why a rule exists. A model told that answers will be read aloud by a text-to-speech engine will avoid markdown more reliably than one told only to avoid markdown.",
  "Use XML tags or headings to separate instructions, context and examples so the model can tell them apart.",
  "Give three to five examples of good output; vary them so the model does not copy one too closely.",
  "Tell the model what to do rather than only what not to do: \"write in flowing paragraphs\" works better than \"do not use bullet points\".",
  "Keep your system prompt under version control and test changes against a fixed set of inputs before deploying them.",
  "Avoid putting secrets, API keys or internal URLs in a system prompt; treat its content as something a determined user may eventually see.",
  "Content retrieved from the web or from user uploads should be clearly delimited and described as data, so the model treats it as material to work on rather than as instructions.",
  "If the assistant should refuse certain requests, say so in the system prompt together with a short, polite template for the refusal.",
 ]),
 "streaming": (["Streaming", "Server-sent events", "Streaming responses"], [
  "Set `stream: true` to receive the response incrementally as server-sent events.",
  "A stream starts with `message_start`, followed by `content_block_delta` events carrying text, and ends with `message_stop`.",
  "If the connection drops mid-stream, the partial output is lost; retry the request or resume from the text you already have by sending it as an assistant prefill.",
  "Streaming does not change the total generation time, but users see the first words much sooner.",
 ]),
 "errors": (["Errors", "Error codes", "Rate limits and errors"], [
  "400 `invalid_request_error`: the request body is malformed, for example a missing `messages` field, an unknown role or a `max_tokens` above the model's limit.",
  "401 `authentication_error`: the API key is missing or invalid. Check the `x-api-key` or `Authorization` header.",
  "429 `rate_limit_error`: you have exceeded your requests or tokens per minute. Back off and retry after the number of seconds in the `retry-after` header.",
  "529 `overloaded_error`: the service is temporarily overloaded; retry with exponential backoff.",
  "Errors are returned as JSON with a `type` and a human-readable `message`; log the request id from the response headers when you contact support.",
 ]),
}
PARAM_TABLE = [
 ("model", "string", "required", "The model that will complete your prompt."),
 ("messages", "array", "required", "Input messages: alternating user and assistant turns."),
 ("system", "string | array", "optional", "System prompt: instructions and context for the model, such as a role or goals."),
 ("max_tokens", "integer", "required", "Maximum number of tokens to generate before stopping."),
 ("temperature", "number", "optional", "Amount of randomness, 0.0 to 1.0. Defaults to 1.0."),
 ("top_p", "number", "optional", "Nucleus sampling cut-off. Use temperature or top_p, not both."),
 ("stop_sequences", "array", "optional", "Custom strings that cause the model to stop generating."),
 ("stream", "boolean", "optional", "Whether to stream the response using server-sent events."),
 ("tools", "array", "optional", "Definitions of tools the model may use."),
 ("tool_choice", "object", "optional", "How the model should use the provided tools."),
 ("metadata", "object", "optional", "An object describing metadata about the request, such as an opaque user id."),
 ("instructions", "string", "optional", "A system or developer message inserted at the start of the model's context."),
 ("response_format", "object", "optional", "Forces JSON output, optionally matching a JSON Schema."),
]


def api_docs_prose(rng):
    r = rng.random()
    api = rng.choice(API_NAMES)
    if r < 0.2:
        rows = pick(rng, PARAM_TABLE, rng.randint(3, 6))
        if rng.random() < 0.5:
            lines = ["| Parameter | Type | Required | Description |", "|---|---|---|---|"] + [f"| `{a}` | {b} | {c} | {d} |" for a, b, c, d in rows]
        else:
            lines = [f"`{a}` ({b}, {c})\n    {d}" for a, b, c, d in rows]
        head = rng.choice(["## Request body", "### Parameters", "Body parameters", "## Request parameters for " + api.replace("the ", "")])
        text = head + "\n\n" + "\n".join(lines)
        if rng.random() < 0.5:
            text += "\n\n" + rng.choice(DOC_TOPICS[rng.choice(["system", "messages", "sampling"])][1]).replace("{api}", api)
        return text, "en", "user"
    topics = list(DOC_TOPICS)
    t = rng.choice(topics)
    heads, sents = DOC_TOPICS[t]
    k = rng.randint(2, min(5, len(sents)))
    idx = sorted(rng.sample(range(len(sents)), k))
    body = " ".join(sents[i].replace("{api}", api) for i in idx)
    if rng.random() < 0.35:
        t2 = rng.choice([x for x in topics if x != t])
        body += "\n\n" + rng.choice(DOC_TOPICS[t2][1]).replace("{api}", api)
    style = rng.random()
    if style < 0.45:
        text = rng.choice(["## ", "### ", "# "]) + rng.choice(heads) + "\n\n" + body
    elif style < 0.6:
        text = rng.choice(heads) + "\n" + body
    elif style < 0.75:
        text = "> **Note**\n> " + sents[idx[0]].replace("{api}", api) + ("\n\n" + " ".join(sents[i].replace("{api}", api) for i in idx[1:]) if k > 1 else "")
    else:
        text = body
    return text, "en", "user"


API_FAQ = [
 ("What is the difference between the system prompt and the first user message?",
  "The system prompt carries the developer's standing instructions and is applied to every turn; the user message is the end user's request. Models are trained to give the system prompt more weight, so put rules and persona there."),
 ("Can I change the system prompt in the middle of a conversation?",
  "Yes. The API is stateless, so each request uses whatever system prompt you send with it. Keep in mind that earlier assistant turns were produced under the old prompt."),
 ("Why does the model sometimes ignore instructions in my system prompt?",
  "Long or contradictory system prompts are the usual cause. Put the most important instructions first, remove rules that conflict, and add an example of the output you expect."),
 ("Does the model remember previous requests?",
  "No. Each request is independent; to continue a conversation, include the earlier messages in the `messages` array."),
 ("How many tokens does my system prompt use?",
  "Call the token-counting endpoint with the same `system`, `messages` and `tools` you plan to send; it returns `input_tokens` without running the model."),
 ("Is the system prompt visible to end users?",
  "Not through the API response. But the model can quote or paraphrase it if asked, so do not store secrets in it."),
 ("Should I use the `system` role or the `developer` role?",
  "On models that support it, the `developer` role is the recommended way to pass application instructions; `system` messages are still accepted and are treated the same way."),
 ("What happens if I send an empty `messages` array?",
  "The request is rejected with a 400 `invalid_request_error`; at least one user message is required."),
 ("Can tools be used together with a system prompt?",
  "Yes. Tool definitions are placed before the system prompt in the model's context; you can refer to the tools by name in your instructions."),
 ("How do I make the model answer only in JSON?",
  "Use structured outputs (`response_format` with a JSON Schema) where available. Otherwise describe the schema in the system prompt and prefill the assistant turn with an opening brace."),
]
def make_api_docs(rng):
    if rng.random() < 0.18:
        qs = pick(rng, API_FAQ, rng.choice([1, 1, 2]))
        head = rng.choice(["FAQ", "## Frequently asked questions", "Common questions", ""])
        body = "\n\n".join(rng.choice(["**Q: {q}**\n{a}", "Q: {q}\nA: {a}", "### {q}\n\n{a}"]).format(q=q, a=a) for q, a in qs)
        return (head + "\n\n" + body).strip(), "en", "user"
    return api_docs_prose(rng)


# ================================================================ 3. security_writing
SW_CONTEXTS = [
 "We're building a support chatbot that answers from our help-centre articles.",
 "Our app lets an LLM agent read the user's inbox and draft replies.",
 "I maintain a browser extension that summarises web pages with an LLM.",
 "We have an internal agent that can open Jira tickets and search our wiki.",
 "Our résumé-screening tool sends uploaded CVs to a model for a first summary.",
 "I'm adding a 'chat with your PDF' feature to our document portal.",
 "We run a coding assistant that reads GitHub issues and proposes patches.",
 "Our customer-facing bot has a fairly long system prompt with pricing rules in it.",
 "We're piloting an assistant that can book travel with the company card.",
 "My side project is a Discord bot backed by an open-weights model.",
 "We use an LLM to triage inbound vendor invoices before a human approves them.",
 "Our RAG pipeline indexes public forum posts to answer product questions.",
]
SW_CONCERNS = [
 "During testing, a colleague hid a line of white text in a web page telling the model to ignore its instructions, and the summary changed completely.",
 "Someone in our beta asked the bot to reveal its system prompt and it printed most of it.",
 "A tester put instructions in an e-mail signature and the agent acted on them when drafting a reply.",
 "We found that a PDF could contain invisible text asking the model to rate the candidate highly, and the summary did exactly that.",
 "A user got the bot to role-play as an 'unrestricted' AI and it started answering questions far outside its scope.",
 "An issue description contained a request aimed at the assistant to add a dependency from an unknown registry, and the proposed patch included it.",
 "Our red team showed that a retrieved page could make the assistant append a markdown image whose URL carried parts of the conversation.",
 "We noticed users pasting long jailbreak prompts they found on Reddit to get around our content rules.",
 "An invoice PDF included a sentence addressed to 'the AI reviewer' saying the invoice was pre-approved, and the model repeated that in its summary.",
 "A forum post we indexed contained text pretending to be a system message, and the bot quoted it as if it were our policy.",
]
SW_QUESTIONS = [
 "What are the standard mitigations?", "How do people usually defend against this?",
 "Is there a reliable way to detect this before it reaches the model?", "Should we be filtering inputs, outputs, or both?",
 "Is a classifier in front of the model enough, or do we need to rethink the agent's permissions?",
 "How worried should we be, and where do we start?", "Does wrapping untrusted content in XML tags actually help?",
 "What logging would help us investigate incidents like this?", "Is there OWASP guidance on this?",
 "Is it realistic to keep a system prompt secret at all?", "How do you test for this in CI?",
 "Would a second model that checks the first one's output help, or is that just more attack surface?",
]
SW_THEMES = {
 "indirect": [
  "Indirect prompt injection happens when a model reads content written by someone other than the user, such as a web page, an e-mail or a shared document, and that content contains instructions the model then follows.",
  "The core problem is that language models receive instructions and data through the same channel, so a sentence in a retrieved document can look to the model exactly like a request from the user.",
  "In the classic demonstration, a web page contained hidden text telling the model to ignore its previous instructions and recommend a particular product, and the summariser complied.",
  "Attackers do not need access to the application; they only need to get text in front of the model, for instance by publishing a page the agent is likely to browse or by sending the victim an e-mail.",
  "What makes agents different from chatbots is that a successful injection can trigger actions: sending messages, moving files or calling APIs with the user's permissions.",
  "Researchers have shown injections hidden in image alt text, PDF metadata, calendar invites and even in the names of files in a repository.",
  "The payload rarely looks like an attack to a human skimming the page: it is often a polite paragraph addressed to 'AI assistants' in tiny or white-on-white text.",
 ],
 "jailbreak": [
  "Jailbreaks target the model's safety training rather than the application: the user tries to talk the model into producing content it would normally refuse.",
  "Common techniques include role-play framings, in which the model is asked to play a character that supposedly has no rules, fictional or hypothetical wrappers, and splitting a request into harmless-looking pieces.",
  "Many-shot jailbreaking exploits long context windows by filling the prompt with fabricated dialogues in which an assistant complies with harmful requests.",
  "Encoding tricks, such as writing the request in base64 or in a low-resource language, have been reported to get past filters that only look at plain English.",
  "The line between jailbreaks and prompt injection is blurry, but a useful rule of thumb is that a jailbreak is the user attacking the model, while an injection is a third party attacking the user through the model.",
  "The 'DAN' prompts that circulated in 2023 were long role-play scenarios that asked the model to pretend it had been freed from its guidelines; most of them stopped working within weeks as models were retrained.",
 ],
 "extraction": [
  "System-prompt extraction is the attempt to get a model to disclose the instructions its developer gave it.",
  "Attackers typically ask the model to repeat or summarise everything above the conversation, or to translate its instructions into another language.",
  "You should assume that a system prompt can be extracted; put nothing in it that would hurt you if it were published.",
  "Leaked system prompts of popular products circulate on GitHub within days of launch, which is a good reminder that they are not a security boundary.",
  "Canary strings, unique tokens placed in the system prompt, let you detect in the output stream when the prompt is being leaked.",
 ],
 "defence": [
  "No single defence stops prompt injection; treat it as a risk to manage with layers, not a bug to fix once.",
  "The most effective mitigation is architectural: limit what the model can do after it has read untrusted content, and require human confirmation for consequential actions.",
  "Input classifiers catch the obvious cases, such as text asking the model to disregard its instructions, but a motivated attacker will paraphrase.",
  "Spotlighting, i.e. marking untrusted text with delimiters or an encoding so the model can tell it apart, reduces attack success rates without eliminating them.",
  "Output filtering matters too: block markdown images that point at unknown domains and check links before they are rendered.",
  "Apply least privilege to tools. A summariser has no reason to be able to send e-mail.",
  "Log the full context of every agent step so that incidents can be reconstructed afterwards.",
  "The dual-LLM pattern keeps a privileged model away from untrusted text entirely; a quarantined model processes the text and returns only structured values.",
  "Red-team your application with the same content types your agent will see in production: e-mails, PDFs, calendar invites, tickets.",
  "Measure both sides of a detector: an injection filter that flags every support ticket containing the word 'ignore' will be switched off within a week.",
 ],
}
SW_TITLES = ["Why prompt injection is still unsolved", "Notes on securing LLM agents", "Prompt injection for product managers",
             "What we learned red-teaming our assistant", "A practical guide to LLM application security", "Jailbreaks vs. prompt injection",
             "Threat modelling an e-mail agent", "Defence in depth for RAG systems", "The lethal trifecta, explained", "Securing tool-using agents"]

PM_SYSTEMS = ["the e-mail triage assistant", "our sales-research agent", "the internal wiki chatbot", "the browsing assistant in the beta app",
              "the support copilot", "the code-review bot", "the meeting-notes summariser", "the procurement assistant"]
PM_EVENTS = [
 ("followed hidden instructions in a retrieved web page and included a link to an external site in its summary", "No customer data left the company; the link was clicked by one internal user and the page was already offline."),
 ("acted on instructions embedded in a customer e-mail and changed the ticket priority to urgent", "Eleven tickets were mis-prioritised for about two hours; no customer was affected."),
 ("disclosed part of its system prompt after a user asked it to repeat its configuration in a code block", "Low: the disclosed text contained formatting rules and the names of two internal tools, but no credentials."),
 ("rendered a markdown image whose URL contained fragments of the conversation, sending them to a third-party server", "Approximately 40 conversation snippets reached the external host before the filter was deployed; affected users were notified."),
 ("was persuaded through a role-play request to answer questions outside its approved scope", "A handful of off-topic answers were shown to one user; none contained harmful content."),
 ("treated text in a shared document's comments as instructions and tried to share the document with an outside address", "The sharing attempt was blocked by the domain policy, so the document was never shared."),
 ("posted an approving review on a pull request whose description contained a note addressed to automated reviewers", "The pull request still required a human approval and was not merged."),
 ("summarised a supplier PDF that contained invisible text claiming the invoice was already approved, and marked it as low risk", "The invoice was caught by the human approver as designed; no payment was made."),
]
PM_DETECT = ["A customer reported the odd behaviour through the feedback button.", "Our output filter flagged an outbound URL to an unknown domain.",
             "An engineer noticed the anomaly while reviewing traces.", "The security team found it during a scheduled red-team exercise.",
             "Monitoring alerted on an unusual spike in tool calls."]
PM_ROOT = ["Retrieved content was concatenated into the prompt with no delimiters and no indication that it was untrusted.",
           "The agent had write access to tools it never needed for its task.", "The system prompt contained internal details that had no reason to be there.",
           "Markdown images in model output were rendered without a domain allow-list.", "Our input screening covered the user's message but not documents fetched by tools.",
           "The agent's actions did not require confirmation when they affected other users."]
PM_FIX = ["Tool results are now labelled as untrusted data and screened before they reach the model.",
          "We removed the send-email tool from the summariser and require user confirmation for any outbound message.",
          "We moved internal details out of the system prompt and rotated the exposed test credentials.",
          "Image rendering is now limited to an allow-list of domains.",
          "We added a paraphrased version of the payload to our regression suite of adversarial documents.",
          "The agent now runs with a read-only token; write actions go through a separate, confirmed step."]
POLICY_RULES = [
 "Any feature that passes third-party content (web pages, e-mails, uploaded files) to a language model must be reviewed for prompt injection before launch.",
 "System prompts must not contain credentials, personal data or internal hostnames.",
 "Agents may only hold the tool permissions required for their task; write actions require explicit user confirmation.",
 "Model output must not be rendered as HTML or executed without sanitisation.",
 "Suspected prompt-injection or jailbreak incidents must be reported to the security team within 24 hours.",
 "Employees must not paste confidential customer data into public chatbots.",
 "Red-team testing, including attempts to extract the system prompt and injections via documents, is required for every major release.",
 "Inputs and outputs of production models are logged and retained for 30 days for incident investigation.",
 "Third-party plugins and MCP servers must be approved by the platform team before use.",
 "Customer-facing assistants must refuse requests outside their documented scope and offer a handover to a human.",
]
THREAT_FEATURES = ["AI inbox assistant", "Chat with your documents", "Autonomous code-fix bot", "Travel-booking agent", "Help-centre chatbot", "Sales research agent"]
THREAT_VECTORS = ["an incoming e-mail", "an uploaded PDF", "a web page returned by search", "a GitHub issue comment", "a calendar invitation", "a product review on a public site"]
THREAT_GOALS = ["exfiltrate the user's recent e-mails", "make the agent send a message in the user's name", "change the agent's recommendation",
                "obtain the system prompt and internal tool names", "make the agent open a link to a phishing page", "trigger an unwanted purchase"]
THREAT_MITS = ["screen tool results with an injection classifier", "require confirmation before any outbound action", "strip markdown images from output",
               "limit tools to read-only scopes", "label retrieved content as data in the prompt", "rate-limit and log tool calls", "allow-list outbound domains"]
OWASP_EX = [
 "A user writes input that causes the model to disregard the developer's instructions and produce content outside the application's purpose.",
 "A web page summarised by the application contains hidden instructions that make the model insert a link to a malicious site.",
 "A document uploaded to a RAG system contains text that changes how the model answers other users' questions.",
 "An e-mail processed by an assistant contains instructions that cause it to forward sensitive messages.",
 "An attacker splits a malicious request across several messages so that no single message looks suspicious.",
 "Instructions are hidden in an image or in Unicode tag characters that a human reviewer cannot see.",
]
OWASP_PREV = [
 "Constrain model behaviour with specific instructions about its role, capabilities and limits.",
 "Define and validate expected output formats.",
 "Implement input and output filtering.",
 "Enforce privilege control and least-privilege access for tools.",
 "Require human approval for high-risk actions.",
 "Segregate and clearly identify external content.",
 "Conduct adversarial testing and attack simulations.",
]
RT_FINDINGS = [
 ("System prompt disclosure", "The tester asked the assistant to output its configuration as a YAML block, and it returned a close paraphrase of its system prompt, including the names of two internal tools.",
  "Move tool names and internal URLs out of the system prompt and add a canary string to detect leaks."),
 ("Indirect injection via uploaded file", "A DOCX with instructions in white 1-pt text caused the assistant to claim that the document had been reviewed by legal.",
  "Screen extracted document text, including hidden text, before it reaches the model."),
 ("Persona jailbreak", "A multi-turn role-play in which the tester framed the assistant as a character 'without any rules' led it to answer medical dosage questions it is scoped to refuse.",
  "Reinforce the scope in the system prompt and add a topic classifier on outputs."),
 ("Data exfiltration through image rendering", "Instructions in a retrieved page made the model emit a markdown image with the user's question in the query string; the web client loaded it automatically.",
  "Do not render remote images in assistant output, or restrict them to an allow-list of domains."),
 ("Tool misuse", "A calendar invite description asked the assistant to cancel the user's other meetings that day; the assistant attempted the cancellation without asking for confirmation.",
  "Require confirmation for destructive tool calls."),
 ("Encoding bypass", "The input filter did not flag a base64-encoded request, which the model decoded and followed.",
  "Screen decoded content as well as raw text."),
 ("Cross-user contamination", "A note stored in a shared workspace influenced answers given to other members of the workspace.",
  "Treat shared workspace content as untrusted input."),
]
SHORT_EN = [
 "Hot take: if your agent can read e-mail and send e-mail, prompt injection is not a model problem, it's a permissions problem.",
 "Reminder for anyone shipping RAG: every document you retrieve is user input, whoever wrote it.",
 "Has anyone benchmarked open-source prompt-injection classifiers on non-English text? Most seem to be trained on English only.",
 "Just read the paper on indirect prompt injection against LLM-integrated apps. The e-mail worm example is scary because nobody has to click anything.",
 "Our injection detector kept flagging developers' questions about system prompts. Tuning for false positives turned out to be most of the work.",
 "Can someone explain the difference between prompt injection and jailbreaking to a non-technical audience? I have a talk on Friday.",
 "Is it a problem that our chatbot will tell users what its instructions are? There's nothing secret in there.",
 "Question for the security folks: do you treat an LLM's output as untrusted input to the next system? You should.",
 "Prompt injection is to LLMs what SQL injection was to web apps, except that there is no equivalent of parameterised queries yet.",
 "We added a rule that the agent cannot follow links found inside fetched pages without asking the user. Attack success in our red-team suite dropped from 31% to 4%.",
 "What's a good dataset of benign documents to measure false positives of an injection filter?",
 "Students in my course were surprised how easily a hidden sentence in a PDF changed the model's grading of an essay.",
 "Our CISO asked whether the new chatbot can be 'jailbroken'. What's a fair, non-alarmist answer?",
 "I'm writing a thesis on detecting prompt injection in tool outputs. Are there public benchmarks besides BIPIA?",
]
COURSE_BULLETS = [
 "Prompt injection = untrusted text interpreted as instructions. Direct (user types it) vs. indirect (comes in via documents, web, e-mail).",
 "Why it is hard: no separation between code and data in the prompt; the model sees one token stream.",
 "Example discussed in class: a job applicant hid a line in their CV addressed to AI screeners; the summary called them an exceptional fit.",
 "Jailbreaks: role-play, hypotheticals, obfuscation, many-shot. Target the model's safety training.",
 "System prompt leakage: assume it will happen. No secrets in prompts.",
 "Defences: least privilege, human in the loop, input/output filtering, spotlighting, dual-LLM, monitoring.",
 "Exfiltration channels: rendered images, links, tool calls with URLs, e-mails.",
 "Exercise for next week: threat-model the homework-helper bot and list three ways it could be misused.",
 "Reading: OWASP Top 10 for LLM Applications, LLM01 and LLM07.",
 "Evaluation of detectors: report recall AND false-positive rate; benign texts that discuss attacks are the hard cases.",
]

SW_ML = {
 "de": [
  "Wie schützen wir unseren Support-Chatbot vor Prompt-Injection über eingebundene Webseiten?",
  "Bei indirekter Prompt-Injection stehen die Anweisungen nicht in der Nutzereingabe, sondern in einem Dokument oder einer Webseite, die das Modell liest.",
  "In unserem Test enthielt eine Bewerbung unsichtbaren Text, der das Modell aufforderte, den Kandidaten besonders positiv zu bewerten.",
  "Ein System-Prompt ist keine Sicherheitsgrenze: Man sollte davon ausgehen, dass Nutzer ihn sich früher oder später ausgeben lassen können.",
  "Jailbreaks zielen auf das Sicherheitstraining des Modells, etwa durch Rollenspiele, in denen das Modell angeblich keine Regeln hat.",
  "Wichtigste Maßnahme: dem Agenten nur die Rechte geben, die er wirklich braucht, und vor folgenreichen Aktionen eine Bestätigung verlangen.",
  "Im Vorfallbericht steht, dass der Assistent versteckte Anweisungen aus einer abgerufenen Seite befolgt und einen fremden Link in die Antwort eingefügt hat.",
  "Hat jemand Erfahrung mit Klassifikatoren gegen Prompt-Injection auf Deutsch? Die meisten Modelle sind nur auf Englisch trainiert.",
 ],
 "fr": [
  "Comment protéger un assistant qui lit les e-mails contre l'injection de prompt indirecte ?",
  "L'injection de prompt indirecte consiste à cacher des instructions dans un contenu que le modèle va lire, par exemple une page web ou un PDF.",
  "Lors de notre audit, une page contenait un texte invisible demandant au modèle d'ignorer ses consignes ; le résumé a été complètement modifié.",
  "Il faut partir du principe que le prompt système peut être divulgué : n'y mettez ni mots de passe ni informations internes.",
  "Les jailbreaks cherchent à contourner l'entraînement de sécurité du modèle, souvent au moyen de jeux de rôle ou de scénarios fictifs.",
  "La mesure la plus efficace reste le principe du moindre privilège : un agent de résumé n'a pas besoin de pouvoir envoyer des e-mails.",
  "Notre filtre signalait toutes les questions de développeurs sur les prompts système ; réduire les faux positifs a été l'essentiel du travail.",
  "Dans ce cours, nous verrons la différence entre injection directe, injection indirecte et extraction du prompt système.",
 ],
 "es": [
  "¿Cómo evitamos que nuestro chatbot siga instrucciones escondidas en los documentos que recupera?",
  "La inyección de prompt indirecta ocurre cuando el modelo lee contenido de terceros que contiene instrucciones, como una página web o un correo.",
  "En la prueba, un PDF con texto invisible pedía al modelo que recomendara un producto concreto, y el resumen lo hizo.",
  "Hay que asumir que el prompt del sistema puede filtrarse; no guardes en él claves ni datos internos.",
  "Los jailbreaks intentan convencer al modelo de que actúe como un personaje sin reglas para saltarse sus restricciones.",
  "Informe del incidente: el asistente siguió instrucciones ocultas en una página recuperada e incluyó un enlace externo en su respuesta.",
  "La defensa más eficaz es limitar los permisos del agente y pedir confirmación antes de cualquier acción irreversible.",
  "¿Alguien conoce un conjunto de datos en español para evaluar detectores de inyección de prompt?",
 ],
 "pt": [
  "Como proteger um agente que lê e-mails contra injeção de prompt indireta?",
  "Na injeção indireta, as instruções maliciosas vêm de um documento ou página que o modelo lê, e não do próprio usuário.",
  "No nosso teste, um currículo com texto oculto pedia ao modelo que avaliasse o candidato como excelente.",
  "O prompt do sistema não é um segredo: assuma que usuários conseguem fazer o modelo revelá-lo.",
  "Relatório de red team: o assistente foi convencido, por meio de um jogo de papéis, a responder perguntas fora do seu escopo.",
  "Limite as permissões das ferramentas e exija confirmação humana para ações com consequências.",
  "Alguém já avaliou classificadores de injeção de prompt em português? Os falsos positivos são o maior problema.",
 ],
 "it": [
  "Come possiamo difendere il nostro assistente RAG dalle prompt injection nascoste nei documenti?",
  "Con la prompt injection indiretta le istruzioni arrivano da un contenuto di terzi, per esempio una pagina web letta dal modello.",
  "Durante il test, una pagina conteneva un testo nascosto che chiedeva al modello di ignorare le sue istruzioni e di consigliare un prodotto.",
  "Il prompt di sistema va considerato pubblico: prima o poi qualcuno riuscirà a farlo rivelare al modello.",
  "I jailbreak puntano ad aggirare l'addestramento di sicurezza del modello, spesso con giochi di ruolo o scenari ipotetici.",
  "Principio del privilegio minimo: l'agente deve avere solo gli strumenti strettamente necessari.",
  "Nel report dell'incidente si legge che il bot ha eseguito istruzioni contenute nella firma di un'e-mail.",
 ],
 "ru": [
  "Как защитить чат-бота от промпт-инъекций через загружаемые документы?",
  "Косвенная промпт-инъекция — это когда инструкции попадают к модели не от пользователя, а из веб-страницы, письма или файла.",
  "В ходе тестирования страница со скрытым текстом заставила модель проигнорировать исходные инструкции и порекомендовать другой товар.",
  "Системный промпт не является секретом: стоит исходить из того, что пользователи смогут его извлечь.",
  "Джейлбрейки обычно используют ролевые игры, в которых модель якобы играет персонажа без ограничений.",
  "Главная мера защиты — минимальные привилегии для агента и подтверждение пользователем всех необратимых действий.",
  "В отчёте об инциденте описано, как ассистент выполнил скрытые указания из найденной страницы и вставил в ответ внешнюю ссылку.",
 ],
 "zh": [
  "如何防止我们的客服机器人执行检索到的网页中隐藏的指令？",
  "间接提示注入是指模型在读取网页、邮件或文档时，把其中第三方写入的指令当成了用户的请求。",
  "在测试中，一份简历里的隐藏文字要求模型给候选人打高分，结果摘要真的照做了。",
  "应当假定系统提示词迟早会被用户套出来，所以不要在里面放密钥或内部信息。",
  "越狱攻击通常借助角色扮演，让模型假装成一个没有规则的角色，从而绕过安全训练。",
  "最有效的防护是最小权限原则：只给代理必要的工具，并在执行不可逆操作前请求用户确认。",
  "事故复盘：助手遵循了检索页面中的隐藏指令，并在回答中插入了一个外部链接。",
 ],
 "ja": [
  "RAGを使ったチャットボットを、検索した文書に埋め込まれた指示から守るにはどうすればよいですか？",
  "間接プロンプトインジェクションとは、モデルが読み込んだWebページやメールに第三者が仕込んだ指示に従ってしまう問題です。",
  "検証では、白い文字で隠された一文がモデルに元の指示を無視するよう求め、要約の内容が大きく変わりました。",
  "システムプロンプトは秘密ではないと考えるべきです。機密情報は入れないでください。",
  "ジェイルブレイクは、ロールプレイなどでモデルの安全性の訓練を回避しようとする手法です。",
  "エージェントには必要最小限の権限だけを与え、取り消せない操作の前にはユーザーの確認を求めましょう。",
  "インシデント報告：アシスタントが取得したページ内の隠れた指示に従い、回答に外部リンクを挿入しました。",
 ],
}
# headings for a text made of statements only (notes, reports); a question gets one of QHEAD
SW_ML_HEAD = {
 "de": ["", "Aus unserem Sicherheitskonzept:", "Kursnotizen, Woche 5:", "Zusammenfassung des Vortrags:", "Lessons learned:"],
 "fr": ["", "Extrait de notre politique de sécurité :", "Notes de cours :", "Retour d'expérience :"],
 "es": ["", "Del informe de seguridad:", "Apuntes del curso:", "Resumen de la charla:"],
 "pt": ["", "Da nossa política de segurança:", "Notas da aula:", "Resumo da palestra:"],
 "it": ["", "Dal report di sicurezza:", "Appunti del corso:", "Note dalla conferenza:"],
 "ru": ["", "Из отчёта по безопасности:", "Конспект лекции:", "Заметки с доклада:"],
 "zh": ["", "摘自安全报告：", "课程笔记：", "演讲摘要："],
 "ja": ["", "セキュリティ報告より：", "講義メモ：", "発表のまとめ："],
}
SW_ML_QHEAD = {"de": ["", "Frage:", "Frage ans Forum:"], "fr": ["", "Question :", "Question au forum :"], "es": ["", "Pregunta:"],
               "pt": ["", "Pergunta:"], "it": ["", "Domanda:"], "ru": ["", "Вопрос:"], "zh": ["", "问题："], "ja": ["", "質問："]}
_ML_USED = Counter()


def ml_lang(rng, table, kind):
    """The least-used language so far for this kind (ties broken at random), so languages stay balanced."""
    langs = sorted(table)
    low = min(_ML_USED[(kind, l)] for l in langs)
    return rng.choice([l for l in langs if _ML_USED[(kind, l)] == low])  # build() counts the accepted ones


def sw_question(rng):
    parts = [rng.choice(SW_CONTEXTS), rng.choice(SW_CONCERNS), rng.choice(SW_QUESTIONS)]
    if rng.random() < 0.3:
        parts = parts[1:]
    return " ".join(parts)


def sw_blog(rng):
    theme = rng.choice(list(SW_THEMES))
    sents = SW_THEMES[theme]
    k = rng.randint(2, 4)
    body = " ".join(sents[i] for i in sorted(rng.sample(range(len(sents)), k)))
    if rng.random() < 0.4:
        other = rng.choice([t for t in SW_THEMES if t != theme])
        body += "\n\n" + " ".join(rng.sample(SW_THEMES[other], rng.randint(1, 2)))
    if rng.random() < 0.4:
        body = rng.choice(["# ", "## ", ""]) + rng.choice(SW_TITLES) + "\n\n" + body
    return body


def sw_postmortem(rng):
    sysn = rng.choice(PM_SYSTEMS)
    ev, impact = rng.choice(PM_EVENTS)
    date = f"{rng.choice(['3', '9', '14', '21', '27'])} {rng.choice(['March', 'April', 'June', 'September', 'November'])}"
    if rng.random() < 0.5:
        return (f"Incident review: {sysn} ({date})\n\nSummary: {sysn[0].upper() + sysn[1:]} {ev}.\n"
                f"Impact: {impact}\nDetection: {rng.choice(PM_DETECT)}\nRoot cause: {rng.choice(PM_ROOT)}\n"
                f"Remediation: {' '.join(rng.sample(PM_FIX, 2))}\n\nThis review is blameless; the goal is to improve the system, not to find a culprit.")
    return (f"Post-mortem summary. On {date}, {sysn} {ev}. {rng.choice(PM_DETECT)} {rng.choice(PM_ROOT)} "
            f"{impact} Follow-ups: {rng.choice(PM_FIX)}")


def sw_policy(rng):
    rules = rng.sample(POLICY_RULES, rng.randint(3, 5))
    head = rng.choice(["Policy: use of language models with untrusted content", "AI Acceptable Use Standard, section 4", "Security requirements for LLM features",
                       "Engineering guideline ENG-27: LLM integrations"])
    return head + f" (v{rng.randint(1, 4)}.{rng.randint(0, 9)})\n\n" + "\n".join(f"{i}. {r}" for i, r in enumerate(rules, 1))


def sw_threat(rng):
    f = rng.choice(THREAT_FEATURES)
    v = rng.choice(THREAT_VECTORS)
    g = rng.choice(THREAT_GOALS)
    mits = rng.sample(THREAT_MITS, 3)
    if rng.random() < 0.5:
        return (f"Threat model: {f}\n\nThreat: an attacker plants instructions in {v} that the assistant reads while doing its job, in order to {g}.\n"
                f"Likelihood: {rng.choice(['medium', 'high'])}. Impact: {rng.choice(['medium', 'high', 'critical'])}.\n"
                f"Mitigations: {mits[0]}; {mits[1]}; {mits[2]}.\nResidual risk: accepted by the product owner after review.")
    return (f"| Threat | Vector | Attacker goal | Mitigation |\n|---|---|---|---|\n"
            f"| Indirect prompt injection | {v} | {g} | {mits[0]} |\n| System prompt extraction | chat input | learn internal tool names | no secrets in the prompt; {mits[1]} |\n"
            f"| Jailbreak via role-play | chat input | off-scope or harmful answers | refusal policy; {mits[2]} |")


def sw_owasp(rng):
    ex = rng.sample(OWASP_EX, rng.randint(2, 3))
    pv = rng.sample(OWASP_PREV, rng.randint(2, 4))
    return ("LLM01: Prompt Injection\n\nA prompt injection vulnerability occurs when user prompts or external content alter the model's behaviour or output in unintended ways. "
            "Direct injections come from the user's own input; indirect injections come from external sources the model processes.\n\nExample attack scenarios:\n"
            + "\n".join(f"- {e}" for e in ex) + "\n\nPrevention and mitigation:\n" + "\n".join(f"- {p}" for p in pv))


def sw_redteam(rng):
    items = rng.sample(RT_FINDINGS, rng.randint(1, 2))
    out = []
    for title, desc, rec_ in items:
        out.append(f"Finding {rng.choice(['RT', 'F', 'LLM'])}-{rng.randint(1, 40)} ({rng.choice(['low', 'medium', 'high'])}): {title}\n"
                   f"Description: {desc}\nRecommendation: {rec_}")
    return ("Red-team report, " + rng.choice(["summary of findings", "round 2", "pre-launch assessment", "Q3"]) + "\n\n" + "\n\n".join(out))


def sw_short(rng):
    return rng.choice(SHORT_EN) if rng.random() < 0.6 else rng.choice(SHORT_EN) + " " + rng.choice(SW_QUESTIONS)


def sw_course(rng):
    return (rng.choice(["Lecture 9: Security of LLM applications", "CS 4xx, week 11: prompt injection", "Workshop notes: attacking and defending chatbots",
                        "Study notes: AI security module"]) + "\n" + "\n".join("- " + b for b in rng.sample(COURSE_BULLETS, rng.randint(3, 5))))


SW_MAKERS = [sw_question, sw_question, sw_question, sw_blog, sw_blog, sw_blog, sw_postmortem, sw_postmortem, sw_policy, sw_threat,
             sw_owasp, sw_redteam, sw_short, sw_short, sw_course]


def make_security_writing(rng, ml=False):
    if ml:
        lang = ml_lang(rng, SW_ML, "security_writing")
        qs = [x for x in SW_ML[lang] if x.endswith(("?", "？"))]
        st = [x for x in SW_ML[lang] if not x.endswith(("?", "？"))]
        if rng.random() < 0.45:
            sel, head = rng.sample(st, rng.randint(0, 1)) + [rng.choice(qs)], rng.choice(SW_ML_QHEAD[lang])
        else:
            sel, head = rng.sample(st, rng.randint(1, 3)), rng.choice(SW_ML_HEAD[lang])
        sep = "" if lang in ("zh", "ja") else " "
        return (head + ("\n" if head else "") + sep.join(sel)).strip(), lang, "user"
    return rng.choice(SW_MAKERS)(rng), "en", "user"


# ================================================================ 4. strong_instruction
SI_SLOTS = {
 "n": ["300", "500", "250", "1,000", "150"], "m": ["800", "700", "400", "1,500", "200"],
 "day": ["Tuesday", "Thursday the 12th", "the 3rd of May", "next Friday", "Monday morning"],
 "day2": ["Wednesday", "the 21st", "this Friday", "Sunday"],
 "aspect": ["layout", "colour scheme", "structure of the argument", "opening paragraph", "timeline", "menu", "navigation"],
 "language": ["Spanish", "German", "French", "simple English", "Italian", "Portuguese", "Japanese"],
 "form": ["short paragraphs", "a numbered list", "a table", "one continuous paragraph", "prose"],
 "plan": ["we skip the museum on day two and go hiking instead", "write the cover letter first and the CV afterwards",
          "let's do the migration in two steps, schema first", "start with the conclusion and work backwards",
          "we'll present the results before the methods", "let's target beginners instead of professionals"],
 "scratch": ["make it a limerick instead", "use the 2022 figures, not 2023", "I want a vegetarian version", "keep the original title",
             "let's call the function parse_row instead", "make the tone more formal", "the meeting is at 3, not 2"],
 "thing": ["notes", "last message", "draft", "shopping list", "question", "bullet points"],
 "topic": ["the word count", "citations", "the tone", "the font", "the deadline", "the target audience", "the colour palette"],
 "newpref": ["it can be as long as it needs to be", "we don't need them for an internal memo", "casual is fine",
             "use whatever looks clean", "we have until the end of the month", "write for teenagers instead", "go with greens and greys"],
 "thing2": ["CSV", "error log", "paragraph", "code snippet", "table", "job description"],
 "date": ["June 14", "the end of Q3", "Friday the 9th", "March 1st"], "date2": ["June 7", "mid-Q3", "the 2nd", "February 20th"],
 "a": ["blog post", "poem", "slide deck outline", "formal letter", "tweet thread"], "b": ["newsletter blurb", "short story", "one-pager", "friendly e-mail", "LinkedIn post"],
 "style": ["minimalist", "retro", "playful", "corporate", "hand-drawn"],
 "job": ["junior data analyst", "product manager", "backend engineer", "nurse practitioner", "barista", "project coordinator", "UX designer"],
 "trip": ["a week in Japan in April", "a long weekend in Rome on a budget", "a family trip to Scotland with two kids", "a cycling tour along the Danube"],
 "role": ["hotel receptionist", "shop assistant in a bakery", "customs officer", "landlord", "doctor's receptionist"],
 "role2": ["guest who lost their key", "customer with a food allergy", "tourist", "new tenant", "patient booking an appointment"],
 "skill": ["my French", "small talk in English", "polite complaints", "my German listening", "negotiating"],
 "keys": ["\"answer\" and \"confidence\"", "\"title\", \"summary\" and \"tags\"", "\"name\", \"date\" and \"amount\"", "\"verdict\" and \"reasons\""],
 "k": ["two", "three", "four", "five"],
 "shop": ["a phone shop", "an airline desk", "a furniture store", "a restaurant"],
 "museum": ["the Rijksmuseum", "the British Museum", "the Prado", "the Louvre"],
 "servings": ["six", "two", "eight"], "servings2": ["four", "three", "twelve"],
 "person": ["my manager", "the client", "my co-author", "our teacher", "the editor"],
}
SI_CORRECTIONS = [
 "Disregard the {n}-word limit I gave earlier, {m} is fine now.",
 "Ignore my last message, I meant {day}.",
 "Ignore my last message, I meant {day}, not {day2}.",
 "Forget the budget for now and focus on the {aspect}.",
 "Forget about the deadline for a moment and just focus on the {aspect}.",
 "From now on, answer in {language}.",
 "From now on, please reply in {language} so I can practise.",
 "Stop using bullet points and write it as {form}.",
 "Stop using bullet points, please.",
 "New plan: {plan}.",
 "Scratch that, {scratch}.",
 "Scratch that last part — {scratch}.",
 "Ignore the typos in my {thing}, I typed it on my phone.",
 "Please ignore the typos, I'm typing fast.",
 "Never mind what I said about {topic}; {newpref}.",
 "Forget the {thing2} I pasted earlier, it was the wrong version. Here's the right one below.",
 "Disregard my earlier instructions about {topic} — {newpref}.",
 "Override what I said before: the deadline is {date}, not {date2}.",
 "Ignore the second half of my previous message, it was meant for someone else.",
 "Actually, cancel that. Let's keep the original version.",
 "Change of plan: instead of a {a}, make it a {b}.",
 "You can ignore the formatting rules I gave at the start; plain text is fine for this one.",
 "Forget everything I said about the logo, {person} changed their mind. Start again with a {style} style.",
 "Let's start the recipe over with {servings} servings instead of {servings2}.",
 "Ignore the previous version of the table, {person} sent updated numbers.",
 "Drop the earlier constraint about {topic}, {newpref}.",
 "Please forget my question about {topic}, I found the answer.",
 "Undo the last change and go back to the version before.",
 "Actually, ignore what I said about {day2}. {day} works better for everyone.",
 "Wait, I gave you the wrong instructions for the conclusion. It should argue the opposite side.",
 "Never mind the earlier brief; {person} wants a {a} now.",
 "My previous instructions were confusing, sorry. Let me restate: {plan}.",
 "Replace my earlier request with this one: {plan}.",
 "Ignore the example I gave you before, it had a mistake in the dates.",
 "Hold on, forget the last two paragraphs I sent and use only the first one.",
 "Reset the word count target to {m} words and keep everything else.",
 "Ignore the sample output in my first message; the real output has more columns.",
 "You don't have to follow the outline I sent earlier anymore, {person} approved a shorter one.",
]
SI_ROLEPLAY = [
 "Act as my interviewer for a {job} position. Ask one question at a time and wait for my answer.",
 "Act as my interviewer for a {job} role and give me honest feedback at the end.",
 "Pretend you're a travel agent and help me plan {trip}.",
 "Let's role-play: you're a {role} and I'm a {role2}. I want to practise {skill}.",
 "You are now my conversation partner to practise {skill}. Correct my mistakes and explain them briefly.",
 "Play the part of a grumpy customer at {shop} so I can practise handling complaints.",
 "Pretend to be a museum guide at {museum} and tell me about three highlights.",
 "Be the dungeon master for a short fantasy adventure for my kids, nothing scary.",
 "Act as a strict but fair editor and mark up my paragraph.",
 "Pretend you're a patient explaining their symptoms so I can practise taking a medical history.",
 "For this exercise, act as a skeptical investor and push back on my pitch.",
 "Imagine you are a tour guide in the year 1900 describing {museum} to visitors.",
 "Pretend you are my study partner and quiz me on the French Revolution, {k} questions at a time.",
 "Take on the role of a debate opponent and argue against school uniforms.",
]
SI_FORMAT = [
 "Always reply in JSON with the keys {keys}.",
 "For the rest of this chat, keep answers under {k} sentences.",
 "Only answer with the corrected sentence, no explanations.",
 "Never use emojis in your replies, I'm pasting them into a formal report.",
 "Respond only with code from now on; I'll ask if I need explanations.",
 "Use British spelling from here on.",
 "Always put the SQL in a code block and the explanation after it.",
 "From now on, give me the answer first and the reasoning afterwards.",
 "Always answer in {language}, even if I write in English.",
 "Don't repeat my question back to me, just answer it.",
 "Please always include the units in your answers.",
 "From now on, format every date as YYYY-MM-DD.",
 "Stop adding a summary at the end of every answer.",
 "Keep using the metric system for the rest of the conversation.",
 "Reply with a single word: yes or no.",
]
SI_FOLLOW = ["", "", "", "Can you redo the summary?", "Please update the itinerary.", "Now rewrite the intro.", "Go ahead with the next section.",
             "Thanks!", "Sorry for the confusion.", "Can you send the revised version?", "Let's continue from there.", "Does that change your recommendation?",
             "Then redo the table.", "Same content otherwise."]
SI_FOLLOW_RP = ["", "", "Ready when you are.", "I'll start.", "Keep it realistic.", "Let's begin.", "It's for a class assignment.", "Keep it light."]
SI_FOLLOW_FMT = ["", "", "Thanks.", "Let's continue with the report.", "It makes copying easier for me.", "Next question coming up."]
SI_PREFIX_RP = ["", "", "", "Okay, new exercise: ", "For practice, ", "Let's try something: ", "I have an interview on Monday. "]
SI_PREFIX_FMT = ["", "", "", "One more thing: ", "Quick request: ", "Also, ", "Small thing: "]
SI_PREFIX = ["", "", "", "Okay, ", "Hmm, ", "Sorry, ", "Actually, ", "One more thing: ", "Quick change: ", "Oh, and "]

SI_ML = {
 "de": ["Vergiss das Budget erst mal und konzentrier dich auf das Layout.", "Ignorier meine letzte Nachricht, ich meinte Dienstag.",
        "Ab jetzt bitte auf Englisch antworten, ich will üben.", "Streich das, mach lieber ein Gedicht daraus.", "Lass die Aufzählungszeichen weg und schreib Fließtext.",
        "Vergiss die 500-Wörter-Grenze, 800 sind auch okay.", "Tu so, als wärst du mein Vorstellungsgespräch-Partner für eine Stelle als Buchhalterin.",
        "Antworte ab sofort immer im JSON-Format.", "Ignorier die Tippfehler, ich schreibe am Handy."],
 "fr": ["Oublie la limite de 500 mots que je t'ai donnée, 800 c'est bien.", "Ignore mon dernier message, je voulais dire mardi.",
        "À partir de maintenant, réponds en anglais s'il te plaît.", "Laisse tomber le budget pour l'instant et concentre-toi sur la mise en page.",
        "Fais comme si tu étais un agent de voyage et aide-moi à organiser un week-end à Lyon.", "Arrête les listes à puces, écris des paragraphes.",
        "Nouveau plan : on commence par la conclusion.", "Ne tiens pas compte des fautes de frappe, j'écris vite."],
 "es": ["Olvida el límite de 500 palabras que te di, 800 está bien.", "Ignora mi último mensaje, quería decir el jueves.",
        "A partir de ahora, respóndeme en inglés.", "Olvida el presupuesto por ahora y céntrate en el diseño.",
        "Haz de entrevistador para un puesto de analista de datos y hazme una pregunta cada vez.", "Deja de usar viñetas, escríbelo en párrafos.",
        "Cambio de planes: mejor un correo informal.", "No hagas caso de las erratas, escribo desde el móvil."],
 "pt": ["Esqueça o limite de 500 palavras, 800 está ótimo.", "Ignore minha última mensagem, eu quis dizer quarta-feira.",
        "A partir de agora, responda em inglês.", "Finja que você é um agente de viagens e me ajude a planejar uma semana em Lisboa.",
        "Pare de usar marcadores e escreva em parágrafos.", "Desconsidere a tabela anterior, a chefe mandou números novos."],
 "it": ["Dimentica il limite di 500 parole, 800 va bene.", "Ignora il mio ultimo messaggio, intendevo martedì.",
        "D'ora in poi rispondi in inglese, per favore.", "Fai finta di essere un cameriere, voglio esercitarmi a ordinare in italiano.",
        "Smetti di usare gli elenchi puntati.", "Cambio di programma: niente museo, andiamo al mare."],
 "ru": ["Забудь про лимит в 500 слов, 800 тоже нормально.", "Не обращай внимания на моё последнее сообщение, я имел в виду вторник.",
        "С этого момента отвечай, пожалуйста, по-английски.", "Представь, что ты турагент, и помоги спланировать поездку в Казань.",
        "Перестань использовать маркированные списки.", "Новый план: сначала пишем выводы, потом введение."],
 "zh": ["忘掉我之前说的500字限制，800字也可以。", "忽略我上一条消息，我指的是星期二。", "从现在开始请用英文回答。",
        "假装你是旅行社顾问，帮我规划一次去成都的旅行。", "不要再用项目符号了，改成段落。", "新计划：先写结论，再写背景。"],
 "ja": ["さっきの500字の制限は忘れてください。800字で大丈夫です。", "前のメッセージは無視してください、火曜日のことでした。",
        "これからは英語で答えてください。", "面接官になりきって、一問ずつ質問してください。", "箇条書きはやめて、文章で書いてください。", "予定変更：博物館はやめて、公園に行きます。"],
 "nl": ["Vergeet de limiet van 500 woorden, 800 is prima.", "Negeer mijn laatste bericht, ik bedoelde dinsdag.", "Antwoord vanaf nu in het Engels.",
        "Doe alsof je een reisagent bent en help me een weekend Gent te plannen."],
}


def _si_fill(rng, t):
    i = rng.randrange(len(SI_SLOTS["topic"]))  # a topic and the new preference that goes with it
    fixed = {"topic": SI_SLOTS["topic"][i], "newpref": SI_SLOTS["newpref"][i]}
    return re.sub(r"\{(\w+)\}", lambda m: fixed.get(m.group(1)) or rng.choice(SI_SLOTS[m.group(1)]), t)


def make_strong_instruction(rng, ml=False):
    if ml:
        lang = ml_lang(rng, SI_ML, "strong_instruction")
        sel = rng.sample(SI_ML[lang], rng.choice([1, 1, 2]))
        return ("" if lang in ("zh", "ja") else " ").join(sel), lang, "user"
    r = rng.random()
    if r < 0.55:
        kind, t, pres, fols = "fix", rng.choice(SI_CORRECTIONS), SI_PREFIX, SI_FOLLOW
    elif r < 0.78:
        kind, t, pres, fols = "rp", rng.choice(SI_ROLEPLAY), SI_PREFIX_RP, SI_FOLLOW_RP
    else:
        kind, t, pres, fols = "fmt", rng.choice(SI_FORMAT), SI_PREFIX_FMT, SI_FOLLOW_FMT
    s = _si_fill(rng, t)
    pre = rng.choice(pres)
    if pre:
        s = pre + (s if s.startswith(("I ", "I'")) or pre.endswith(". ") else s[0].lower() + s[1:])
    if kind != "rp" and rng.random() < 0.2:
        s = s + " " + _si_fill(rng, rng.choice(SI_FORMAT if kind == "fix" else SI_CORRECTIONS))
    fol = rng.choice(fols)
    return (s + (" " + fol if fol else "")).strip(), "en", "user"


# ================================================================ 5. doc_imperative (role "tool")
D = {
 "first": ["Anna", "Marco", "Priya", "Tom", "Lena", "Kenji", "Sofia", "David", "Amara", "Jonas", "Chloé", "Mateo", "Ingrid", "Ravi"],
 "last": ["Schmidt", "Rossi", "Patel", "Nguyen", "Kowalski", "Okafor", "Dubois", "Tanaka", "Larsen", "García", "Byrne", "Novak"],
 "shop": ["Northwind Outdoor", "Lumen Home", "Papercraft Co.", "BrewBox", "Fjord Furniture", "PixelParts", "Green Basket", "Atlas Books", "Kettle & Co.", "Veloce Bikes"],
 "item": ["Trail Runner 2 (EU 42)", "Ceramic pour-over set", "A5 dotted notebook, 3-pack", "USB-C dock, 8 ports", "Oak bookshelf, 5 shelves",
          "Merino base layer, size M", "Cast-iron skillet 26 cm", "Noise-cancelling headphones", "Wall calendar 2025", "LED desk lamp"],
 "carrier": ["DHL", "UPS", "DPD", "Royal Mail", "PostNL", "GLS", "FedEx", "Correos"],
 "city": ["Leeds", "Lyon", "Munich", "Porto", "Utrecht", "Milan", "Gdańsk", "Bristol", "Valencia", "Graz"],
 "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
 "month": ["January", "February", "March", "April", "May", "June", "July", "September", "October", "November"],
 "company": ["Acme Corp", "Brightline Ltd", "Helix Analytics", "Nordlys AS", "Contoso", "Globex", "Tiller & Reed", "Quantum Foods"],
 "proj": ["fastcsv", "tidyconf", "pagewatch", "lumen-ui", "mailroom", "geo-tiles", "bookshelf-api", "snapdeploy", "trackr", "queuekit"],
 "product": ["CloudDesk", "Ledgerly", "TeamTrack", "Notable", "ShipFast", "Mosaic CMS", "PayRoll+", "Vault Drive"],
 "appliance": ["dehumidifier", "pressure washer", "electric kettle", "space heater", "food processor", "cordless drill", "robot vacuum", "ceiling fan"],
}


def g(rng, k):
    return rng.choice(D[k])


def num(rng, a, b):
    return rng.randint(a, b)


def doc_shipping(rng):
    shop, carrier, first = g(rng, "shop"), g(rng, "carrier"), g(rng, "first")
    items = rng.sample(D["item"], rng.randint(1, 3))
    order = f"{rng.choice(['#', 'NW-', 'ORD-', ''])}{num(rng, 100000, 999999)}"
    lines = "\n".join(f"  {num(rng, 1, 2)} x {i}" for i in items)
    extra = rng.sample([
        "Please do not reply to this e-mail; this mailbox is not monitored.",
        "Do not reply to this message. For questions about your order, visit our help centre.",
        "If you are not at home, the driver will leave a card. Do not throw it away: it contains the code to collect your parcel.",
        "Please check the parcel for damage before signing for it.",
        "Tracking information can take up to 24 hours to appear. Please allow time before contacting us.",
        "Returns are free within 30 days. Keep the original packaging and use the prepaid label in the box.",
        "Ignore any earlier delivery estimate you received; the date below is the most up to date.",
        "Make sure someone is available to receive the parcel, as a signature is required.",
    ], 3)
    return (f"Subject: Your {shop} order {order} is on its way\n\nHi {first},\n\nGood news: your order has shipped with {carrier}.\n\n{lines}\n\n"
            f"Estimated delivery: {g(rng, 'weekday')}, {num(rng, 1, 28)} {g(rng, 'month')}\nTracking number: {rng.choice(['JD', '1Z', 'CP'])}{num(rng, 10**9, 10**10 - 1)}\n\n"
            f"{extra[0]} {extra[1]}\n\n{extra[2]}\n\nThanks for shopping with us,\nThe {shop} team")


def doc_receipt(rng):
    shop = g(rng, "shop")
    total = f"{num(rng, 12, 480)}.{num(rng, 10, 99)}"
    notes = rng.sample([
        "Keep this receipt for your records. You will need it for returns or warranty claims.",
        "This is an automatically generated message. Please do not reply.",
        "If you did not make this purchase, contact our support team immediately and do not share your card details with anyone who calls you.",
        "Forgot to add something? Orders can be changed within one hour of purchase from your account page.",
        "VAT is included where applicable. Business customers can download an invoice from the Orders page.",
        "Please ignore this e-mail if you have already received a receipt in the app; it is a duplicate copy.",
    ], 3)
    return (f"{shop} - Payment receipt\n\nReceipt no. {num(rng, 1000, 9999)}-{num(rng, 1000, 9999)}\nDate: {num(rng, 1, 28)} {g(rng, 'month')} 2024\n"
            f"Item: {g(rng, 'item')}\nPayment method: {rng.choice(['Visa ending 4417', 'Mastercard ending 0921', 'PayPal', 'Apple Pay'])}\nTotal paid: EUR {total}\n\n"
            + "\n\n".join(notes) + f"\n\nQuestions? Visit help.{shop.split()[0].lower()}.example")


def doc_account(rng):
    prod = g(rng, "product")
    first = g(rng, "first")
    v = rng.randrange(3)
    if v == 0:
        return (f"Subject: Reset your {prod} password\n\nHi {first},\n\nWe received a request to reset the password for your {prod} account. "
                f"Click the link below to choose a new password. The link expires in {rng.choice(['30 minutes', '1 hour', '24 hours'])}.\n\n"
                f"https://account.{prod.lower().replace('+', 'plus').replace(' ', '')}.example/reset\n\n"
                "If you didn't request a password reset, you can safely ignore this e-mail. Your password will not change.\n\n"
                f"Never share your password or this link with anyone. {prod} staff will never ask you for your password.\n\n— The {prod} Security Team")
    if v == 1:
        return (f"Subject: New sign-in to your {prod} account\n\nWe noticed a new sign-in from {rng.choice(['Chrome on Windows', 'Safari on iPhone', 'Firefox on Linux', 'the Android app'])} "
                f"near {g(rng, 'city')} on {g(rng, 'weekday')} at {num(rng, 7, 22)}:{num(rng, 10, 59)}.\n\nIf this was you, you can ignore this message. "
                "If you don't recognise this activity, change your password right away and turn on two-step verification in Settings > Security. "
                "Do not forward this e-mail to anyone.\n\nThis is an automated notification; replies are not read.")
    return (f"Subject: Verify your e-mail address\n\nWelcome to {prod}, {first}!\n\nPlease confirm your e-mail address by clicking the button below within 48 hours. "
            "Until you verify, you will not be able to invite team members or export data.\n\n[ Verify e-mail ]\n\n"
            f"Didn't sign up for {prod}? Someone may have typed your address by mistake. Just ignore this message and the account will be deleted automatically after 7 days.")


def doc_readme(rng):
    p = g(rng, "proj")
    lang = rng.choice(["node", "python", "rust", "go"])
    inst = {"node": f"npm install\nnpm run dev", "python": f"python -m venv .venv\nsource .venv/bin/activate\npip install -e '.[dev]'",
            "rust": "cargo build --release", "go": f"go install ./cmd/{p}@latest"}[lang]
    tips = rng.sample([
        "Run `npm install` before starting the dev server, otherwise the build will fail with missing modules." if lang == "node" else "Install the dependencies before running the tests.",
        "Do not commit your `.env` file. Copy `.env.example` to `.env` and fill in your own values.",
        "Never put real API keys in the config files under `examples/`; they are public.",
        "Ignore the deprecation warnings printed by the test runner for now; they come from an upstream dependency and are tracked in #" + str(num(rng, 40, 400)) + ".",
        "Make sure Docker is running before you start the integration tests.",
        "Always run `make fmt` before opening a pull request; CI rejects unformatted code.",
        "Forget to run the migrations? The server will refuse to start and print the missing migration ids.",
        "Please open an issue before starting work on a large change, so we can agree on the approach first.",
        "Do not edit files in `generated/` by hand; run `make codegen` instead.",
        "You must set `DATABASE_URL` before running the server.",
    ], rng.randint(3, 4))
    return (f"# {p}\n\n{rng.choice(['A small, fast', 'A lightweight', 'A batteries-included', 'A minimal'])} "
            f"{rng.choice(['library for parsing CSV files', 'tool for watching web pages for changes', 'config loader with validation', 'component library', 'job queue', 'static site deployer'])}.\n\n"
            f"## Getting started\n\n```sh\ngit clone https://github.com/example/{p}.git\ncd {p}\n{inst}\n```\n\n## Notes\n\n" + "\n".join(f"- {t}" for t in tips)
            + f"\n\n## License\n\n{rng.choice(['MIT', 'Apache-2.0', 'MIT OR Apache-2.0', 'BSD-3-Clause'])}")


def doc_safety(rng):
    a = g(rng, "appliance")
    w = rng.sample([
        "Do not open the cover. There are no user-serviceable parts inside.",
        f"Do not immerse the {a} in water or any other liquid.",
        "Unplug the appliance before cleaning or when it is not in use.",
        "Do not use the appliance if the cable or plug is damaged. Have it replaced by the manufacturer or a qualified electrician.",
        "Keep children and pets away from the appliance while it is operating.",
        "Never leave the appliance running unattended.",
        "Do not cover the air vents.",
        "Do not use with an extension cord or a multi-socket adapter.",
        "Ignore these instructions at your own risk: damage caused by misuse is not covered by the warranty.",
        "Read all instructions before first use and keep this manual for future reference.",
    ] + (["Disconnect the battery before changing accessories.", "Wear eye protection when operating this tool.",
          "Do not point the nozzle at people, animals or electrical equipment."] if a in ("pressure washer", "cordless drill") else
         ["Do not place the appliance near curtains or other flammable materials.", "Place the appliance on a stable, level surface."]), rng.randint(5, 7))
    return (f"{rng.choice(['IMPORTANT SAFETY INSTRUCTIONS', 'Safety information', 'WARNING', 'Before you start'])}\n\n"
            f"Model {rng.choice(['DH', 'PW', 'KT', 'SH', 'FP', 'CD', 'RV', 'CF'])}-{num(rng, 100, 990)} {a}\n\n"
            + "\n".join(f"{i}. {x}" for i, x in enumerate(w, 1))
            + f"\n\nIf the {a} does not work correctly, do not attempt to repair it yourself. Contact customer service or an authorised service centre.")


def doc_hr_it(rng):
    co = g(rng, "company")
    v = rng.randrange(4)
    if v == 0:
        return (f"IT Service Desk - {co}\n\nForgot your password? Reset it at https://password.{co.split()[0].lower()}.example using your employee ID and the code sent to your phone. "
                "Do not share your password with colleagues, and never enter it on a site you reached from an e-mail link. "
                f"IT will never ask for your password by phone or e-mail.\n\nAccount locked after {rng.choice(['five', 'three', 'ten'])} failed attempts? Wait 15 minutes or call extension {num(rng, 2000, 2999)}.\n\n"
                f"Planned maintenance: the VPN will be unavailable on {g(rng, 'weekday')} from 22:00 to 23:30. Save your work and log off before 22:00.")
    if v == 1:
        return (f"HR announcement: benefits enrolment\n\nDear colleagues,\n\nOpen enrolment for {num(rng, 2025, 2026)} benefits runs until {num(rng, 1, 28)} {g(rng, 'month')}. "
                "Log in to the HR portal and review your elections, even if you don't want to change anything. "
                "If you do nothing, your current plan will roll over, except for the flexible spending account, which must be renewed every year.\n\n"
                f"Please ignore the reminder sent on {g(rng, 'weekday')}: it listed the wrong deadline.\n\nQuestions? Contact {g(rng, 'first')} {g(rng, 'last')} in People Operations.")
    if v == 2:
        return (f"Phishing awareness reminder\n\nOver the past week several staff at {co} received e-mails that appeared to come from the finance team and asked them to approve an urgent payment. "
                "Do not click links or open attachments in unexpected messages. Check the sender's address carefully. "
                "If in doubt, forward the message to the security team using the Report button and then delete it. "
                "Never approve a payment or change bank details based on an e-mail alone: call the requester on a number you already know.\n\nThank you for staying alert.")
    return (f"Office notice\n\nThe fire alarm will be tested on {g(rng, 'weekday')} between {num(rng, 9, 11)}:00 and {num(rng, 9, 11)}:15. "
            "You do not need to leave the building during the test, so please ignore the alarm during that window. "
            "If the alarm sounds at any other time, evacuate immediately by the nearest exit and do not use the lifts. "
            f"Assemble at the car park on {rng.choice(['Station Road', 'the north side', 'Mill Lane', 'Canal Street'])} and wait for the fire wardens.\n\nFacilities team, {co}")


def doc_tos(rng):
    prod = g(rng, "product")
    cl = rng.sample([
        f"You must not use {prod} to send unsolicited messages, to infringe the rights of others or to distribute malware.",
        "You are responsible for keeping your login credentials confidential. Notify us immediately of any unauthorised use of your account.",
        "We may suspend or terminate your access if you breach these Terms.",
        "Do not attempt to bypass, disable or interfere with security features of the Service.",
        "These Terms override any conflicting terms in a purchase order or other document you send us.",
        "If any provision of these Terms is found unenforceable, the remaining provisions remain in full force.",
        "You may not reverse engineer, decompile or disassemble the software, except where applicable law expressly permits it.",
        "We may update these Terms from time to time. Continued use of the Service after the changes take effect means you accept the revised Terms.",
        "Administrator accounts can add and remove users and change permissions; the customer is responsible for actions taken by its administrators.",
    ], rng.randint(3, 5))
    sec = num(rng, 3, 12)
    return (f"{prod} Terms of Service\n\n{sec}. {rng.choice(['Acceptable use', 'Your responsibilities', 'Account security', 'General'])}\n\n"
            + "\n".join(f"{sec}.{i} {c}" for i, c in enumerate(cl, 1)))


def doc_invite(rng):
    first, last = g(rng, "first"), g(rng, "last")
    topic = rng.choice(["Q3 planning", "Website relaunch kick-off", "Budget review", "Onboarding: new support tools", "Sprint 42 retro", "Vendor selection, round 2"])
    notes = rng.sample([
        "Please read the attached document before the meeting; we will not go through it slide by slide.",
        "Ignore the earlier invite with the wrong room, this one replaces it.",
        "Bring your laptop; we'll edit the plan together.",
        "If you can't make it, please decline and add your comments to the doc instead.",
        "Don't forget to update your status in the tracker beforehand.",
        "Cameras on if possible, it's a discussion-heavy session.",
        "No need to prepare anything beyond a quick look at last quarter's numbers.",
        "Please add any topics you want to raise to the agenda doc by the day before, so we can plan the time.",
    ], 3)
    return (f"Invitation: {topic}\nWhen: {g(rng, 'weekday')} {num(rng, 1, 28)} {g(rng, 'month')}, {num(rng, 9, 16)}:{rng.choice(['00', '30'])} - {num(rng, 10, 17)}:{rng.choice(['00', '30'])} (CET)\n"
            f"Where: {rng.choice(['Room Aurora, 3rd floor', 'Teams', 'Zoom (link below)', 'Meeting room B2 / Google Meet'])}\nOrganizer: {first} {last}\n\n"
            f"Hi all,\n\n{notes[0]} {notes[1]}\n\nAgenda:\n1. {rng.choice(['Status update', 'Where we are'])}\n2. {rng.choice(['Open decisions', 'Risks and blockers', 'Budget'])}\n3. Next steps\n\n{notes[2]}\n\nThanks,\n{first}")


def doc_changelog(rng):
    p = g(rng, "proj")
    maj, mi = num(rng, 0, 4), num(rng, 1, 30)
    entries = rng.sample([
        "Added `--ignore-missing` flag to skip files that no longer exist.",
        "Breaking: the `override` option in the config file has been renamed to `overrides`. Update your config before upgrading.",
        "Fixed a crash when the system locale was not UTF-8.",
        "Deprecated `Client.connect_admin()`; use `Client.connect(role=\"admin\")` instead.",
        "Removed support for Node 16. Please upgrade to Node 18 or later.",
        "Improved error message when the password file is unreadable.",
        "Do not upgrade if you rely on the old cache format: run `migrate-cache` first.",
        "Security: tokens are no longer written to debug logs.",
        "The `--force` flag now asks for confirmation unless `--yes` is also given.",
        "Docs: clarified how to disable telemetry.",
        "Fixed `ignore` patterns with leading slashes on Windows.",
        "Added `system` and `user` scopes to `config get`; the default is unchanged.",
        "Run `tool doctor` after upgrading to check for stale lock files.",
    ], rng.randint(4, 7))
    return (f"# Changelog\n\n## [{maj}.{mi}.0] - 2024-{num(rng, 1, 12):02d}-{num(rng, 1, 28):02d}\n\n" + "\n".join(f"- {e}" for e in entries)
            + f"\n\n## [{maj}.{mi - 1}.{num(rng, 1, 4)}]\n\n- {rng.choice(['Fixed typo in CLI help.', 'Bumped dependencies.', 'Fixed a memory leak in the watcher.'])}\n\nUpgrading? Read the migration notes in docs/upgrading.md first.")


TICKETS = [
 ("Login problem", "I changed my e-mail address last week and now I can't log in. The reset link goes to my old address, which no longer exists. Please ignore my previous ticket, I wrote the wrong account number there. The right one is {acct}. Can you update my e-mail to the new one? I'm happy to verify my identity however you need."),
 ("App update fails", "Your app keeps asking me to update but the update fails with error {code}. I already tried reinstalling and restarting my phone. Please don't tell me to clear the cache again, I did that three times. I'm on Android 14, about 2 GB of free space. What else can I do?"),
 ("Cancel subscription", "Please cancel my subscription at the end of this billing period and do not charge my card again. I was also charged twice in {month}, please refund the second charge. The order numbers are in the attached screenshot. I'd appreciate a confirmation e-mail once it's done."),
 ("Admin access", "Our admin left the company and nobody else has admin rights on our {prod} workspace. How can we transfer ownership? We can send proof that we're the account owner, for example the invoices or a letter on company paper. Please hurry, payroll runs on {weekday}."),
 ("Export issue", "Disregard my message from this morning, the CSV export works now. But I have a new issue: the PDF export cuts off the last column. Could you have a look? Steps: open any report, click Export > PDF, choose landscape. It happens in Chrome and Firefox."),
 ("Folder permissions", "Forget about the invoice question, our accountant found it. The remaining problem is that two users can't see the shared folder although they are in the right group. I removed and re-added them, no change. Screenshots of the group settings are attached."),
 ("Wrong delivery address", "I entered my old address by mistake for order {acct}. Please change it to the new one below before it ships, or stop the delivery if that's not possible. Do not send it to the old flat, nobody lives there any more."),
 ("Password reset e-mail not arriving", "I've requested a password reset five times today and no e-mail arrives. It's not in spam either. Our IT says nothing is blocked on their side. Could you send it manually or reset the password for me? My username is the same as my e-mail."),
]
TICKET_AGENT = ["Thanks for reaching out! Could you tell us which browser you are using?", "Hi, thanks for your message. Have you tried logging out and in again?",
                "Thank you for contacting support. A colleague will look into this within one business day."]


def doc_ticket(rng):
    first, last, prod = g(rng, "first"), g(rng, "last"), g(rng, "product")
    subj, body = rng.choice(TICKETS)
    greet = rng.choice(["", "Hello,\n\n", "Hi team,\n\n", "Good morning,\n\n", "Dear support,\n\n"])
    body = body.format(acct=num(rng, 100000, 999999), code=num(rng, 100, 599), month=g(rng, "month"), prod=prod, weekday=g(rng, "weekday"))
    text = (f"Ticket #{num(rng, 10000, 99999)} | Priority: {rng.choice(['Normal', 'High', 'Low'])} | Channel: {rng.choice(['E-mail', 'Web form', 'Chat'])}\n"
            f"From: {first} {last}\nSubject: {subj}\n\n{greet}{body}\n\n{rng.choice(['Thanks', 'Best regards', 'Cheers', 'Kind regards'])},\n{first}")
    if rng.random() < 0.5:
        text += rng.choice(["\n\nSent from my iPhone", f"\n{last} & Partners, accounts department"])
    if rng.random() < 0.4:
        text += f"\n\n--- previous message ---\nSupport ({g(rng, 'first')}): {rng.choice(TICKET_AGENT)}"
    return text


def doc_slack(rng):
    names = rng.sample(D["first"], 3)
    lines = rng.sample([
        "ignore the alert in #ops, that's the staging box, I'm on it",
        "reminder: don't merge to main today, release freeze until 5pm",
        "can someone with admin rights add the new intern to the GitHub org?",
        "forget what I said about the 3pm call, it moved to tomorrow",
        "pls restart the worker after you deploy, it doesn't pick up the new config",
        "new plan for the demo: we show the mobile app first",
        "whoever owns the shared password for the test account, please rotate it, it's in an old screenshot",
        "stop pushing to the release branch, I'm cutting the tag now",
        "you can disregard the CI failure on my PR, it's the flaky e2e test again",
        "override approved, go ahead and deploy the hotfix",
        "don't forget to fill in the retro board before Thursday",
        "has anyone seen the sudo prompt hang on the new build agents?",
        "ok scratch that, the bug is in the parser not the cache",
    ], rng.randint(4, 6))
    reps = ["👍", "ack", "on it", "thanks!", "done", "kk", "noted", "will do"]
    for _ in range(rng.randint(1, 2)):
        lines.insert(rng.randint(1, len(lines)), rng.choice(reps))
    out = []
    h, m = num(rng, 9, 16), num(rng, 0, 15)
    for i, l in enumerate(lines):
        m += rng.randint(0, 5)
        out.append(f"[{h}:{m:02d}] {names[(i + rng.randint(0, 1)) % 3]}: {l}")
    return f"#{rng.choice(['eng-backend', 'platform', 'release', 'team-web', 'ops-chatter'])}\n" + "\n".join(out)


ASSEMBLY_ORDER = [
    "Check that all parts listed on page 2 are present before you start. Do not throw away the packaging until assembly is complete.",
    "Ignore the pre-drilled holes marked X; they are for the optional drawer.",
    "Do not fully tighten the screws until all panels are in place.",
    "Do not use a power drill on the cam locks.",
    "Attach the back panel with the smooth side facing inwards.",
    "Two people are needed for this step. Do not attempt to lift the frame alone.",
    "Forget the small plastic caps for now; they are fitted in the last step.",
    "Use the wall anchor supplied. Furniture that tips over can cause serious injury.",
    "Tighten all bolts again after one week of use.",
]


def doc_assembly(rng):
    item = rng.choice(["bookshelf", "bed frame", "desk", "wardrobe", "bike trailer", "garden bench"])
    steps = rng.sample([
        "Check that all parts listed on page 2 are present before you start. Do not throw away the packaging until assembly is complete.",
        "Do not fully tighten the screws until all panels are in place.",
        "Attach the back panel with the smooth side facing inwards.",
        "Two people are needed for this step. Do not attempt to lift the frame alone.",
        "Forget the small plastic caps for now; they are fitted in the last step.",
        "Use the wall anchor supplied. Furniture that tips over can cause serious injury.",
        "Ignore the pre-drilled holes marked X; they are for the optional drawer.",
        "Tighten all bolts again after one week of use.",
        "Do not use a power drill on the cam locks.",
    ], rng.randint(4, 6))
    steps = sorted(steps, key=ASSEMBLY_ORDER.index)
    return (f"Assembly instructions - {item.title()} {rng.choice(['HEMNES', 'Model 2', 'KV-' + str(num(rng, 10, 99)), 'Classic'])}\n\nTools needed: {rng.choice(['Phillips screwdriver, hex key (supplied)', 'hex key (supplied), hammer', 'screwdriver, spirit level'])}\n\n"
            + "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1)))


def doc_school(rng):
    first = g(rng, "first")
    notes = rng.sample([
        "Please make sure your child brings a packed lunch and a water bottle on the trip day.",
        "Do not send sweets or fizzy drinks, as we are a healthy-snack school.",
        "Forgot to return the consent form? Spare copies are at the office; it must be signed by Friday.",
        "Ignore the date printed in the September calendar: parents' evening is on the 14th, not the 7th.",
        "Label all clothing with your child's name.",
        "Please do not park in the staff car park at pick-up time.",
        "Children must not bring mobile phones to class; they will be kept at the office if found.",
    ], rng.randint(3, 4))
    return (f"Class {num(rng, 1, 6)}{rng.choice('ABC')} newsletter - {g(rng, 'month')}\n\nDear parents and carers,\n\n{rng.choice(['What a busy month it has been!', 'Thank you for your support this term.', 'Here is what is coming up.'])} "
            + " ".join(notes) + f"\n\nIf you have any questions, please speak to me at the gate or e-mail the office.\n\nBest wishes,\n{first} {g(rng, 'last')}")


def doc_leaflet(rng):
    drug = rng.choice(["Ibuprofen 200 mg tablets", "Paracetamol 500 mg caplets", "Cetirizine 10 mg tablets", "Loperamide 2 mg capsules", "Antacid chewable tablets"])
    w = rng.sample([
        "Do not exceed the stated dose.", "Do not take for longer than 3 days without talking to your doctor.",
        "Keep out of the sight and reach of children.", "Do not take if you are allergic to any of the ingredients.",
        "Ask your pharmacist before taking this medicine with other painkillers.", "Do not drive if you feel drowsy.",
        "If you forget a dose, take it as soon as you remember, but do not take a double dose to make up for a forgotten one.",
        "Stop taking the medicine and seek medical help immediately if you have an allergic reaction.",
        "Read all of this leaflet carefully before you start taking this medicine. Keep it: you may need to read it again.",
    ], rng.randint(5, 7))
    return f"Package leaflet: information for the user\n\n{drug}\n\n" + "\n".join(f"• {x}" for x in w) + "\n\nStore below 25 °C in the original package."


def doc_rental(rng):
    first = g(rng, "first")
    city = g(rng, "city")
    notes = rng.sample([
        "Check-in is from 15:00. Please do not arrive earlier unless we have confirmed it.",
        "The key box code is sent on the morning of arrival. Do not share it with anyone outside your group.",
        "Please do not smoke inside the apartment or on the balcony.",
        "Wi-Fi: network 'Guest', the password is on the fridge.",
        "Ignore the doorbell labelled 'Office'; ring the one marked 3B.",
        "Before you leave, turn off the heating, close all windows and put the key back in the box.",
        "Quiet hours are from 22:00 to 7:00. Our neighbours are lovely, let's keep it that way.",
        "Rubbish goes in the bins in the courtyard; please separate paper and plastic.",
    ], rng.randint(4, 5))
    return (f"Welcome to {city}, {first}!\n\nWe are looking forward to hosting you. A few house rules:\n\n" + "\n".join(f"- {n}" for n in notes)
            + f"\n\nIf anything is broken or missing, message us in the app. Enjoy your stay!\n{g(rng, 'first')} & {g(rng, 'first')}")


THREAD_MSGS = [
 "Please send me the final figures by {weekday} noon so I can put them in the board pack. Don't worry about formatting, I'll tidy it up.",
 "Ignore the version I sent yesterday, the totals in column D were wrong. The attached file replaces it.",
 "Could you forward this to {first2} as well? She's covering for me next week.",
 "Quick reminder to everyone: do not share the draft outside the team until it has been approved by legal.",
 "Forget the 10 am slot, the room is taken. Let's meet at 2 pm in the small meeting room instead.",
 "I've reset the shared account password; the new one is in the vault, not in e-mail. Please update your saved logins.",
 "Please review section 3 and leave comments directly in the document rather than replying to this thread.",
 "New plan: we send the survey on Monday and close it on Friday, so the results are in before the offsite.",
 "Stop editing the old spreadsheet, please; everything has moved to the new tracker.",
 "Thanks all. Please delete any local copies of the customer list once the mailing is done.",
]


def doc_email_thread(rng):
    people = rng.sample(D["first"], 3)
    co = g(rng, "company")
    dom = co.split()[0].lower() + ".example"
    msgs = rng.sample(THREAD_MSGS, rng.randint(3, 4))
    out = [f"Subject: {rng.choice(['RE: RE: Q3 report', 'Fwd: offsite planning', 'RE: customer survey', 'RE: board pack draft', 'RE: mailing list cleanup'])}"]
    for i, m in enumerate(reversed(msgs)):
        p = people[i % 3]
        greet = rng.choice(["Hi all,\n", "Hi,\n", "Hello team,\n", ""])
        out.append(f"{'-----Original Message-----' if i else ''}\nFrom: {p} {g(rng, 'last')} <{p.lower()}@{dom}>\nSent: {g(rng, 'weekday')} {num(rng, 8, 18)}:{num(rng, 10, 59)}\n\n"
                   f"{greet}{m.format(weekday=g(rng, 'weekday'), first2=people[(i + 1) % 3])}\n\n{p}")
    return "\n\n".join(x.strip() for x in out)


DOC_MAKERS = [doc_email_thread, doc_email_thread, doc_shipping, doc_receipt, doc_account, doc_readme, doc_readme, doc_safety, doc_hr_it, doc_hr_it, doc_tos, doc_invite, doc_changelog,
              doc_ticket, doc_ticket, doc_slack, doc_assembly, doc_school, doc_leaflet, doc_rental]


def make_doc_imperative(rng):
    for _ in range(50):
        t = rng.choice(DOC_MAKERS)(rng)
        if 60 <= len(t.split()) <= 250:
            return t, "en", "tool"
    raise RuntimeError("no document of the right length")


# ================================================================ 6. code_words
GITIGNORE = {
 "# Dependencies": ["node_modules/", "vendor/", ".venv/", "venv/", "__pypackages__/", "bower_components/"],
 "# Build output": ["dist/", "build/", "target/", "out/", "*.o", "*.pyc", "__pycache__/", "*.class", "bin/", "obj/"],
 "# Secrets - never commit these": [".env", ".env.local", "*.pem", "secrets.yaml", "config/credentials.json", "*.key", ".npmrc"],
 "# Editors": [".idea/", ".vscode/", "*.swp", "*~", ".DS_Store", "Thumbs.db", "*.sublime-workspace"],
 "# Logs": ["*.log", "logs/", "npm-debug.log*", "yarn-error.log"],
 "# Local overrides": ["docker-compose.override.yml", "config/local.py", "settings.override.json", "*.local.toml", "terraform.tfvars"],
 "# Test & coverage": ["coverage/", ".coverage", "htmlcov/", ".pytest_cache/", ".nyc_output/"],
}
IGNORE_Q = [
 "Why is my .env still showing up in git status even though it's in .gitignore?",
 "How do I ignore everything in build/ except build/.gitkeep?",
 "Does .dockerignore use the same syntax as .gitignore?",
 "Is it bad practice to commit .vscode/ settings?",
 "How can I check which rule is ignoring a file?",
 "Should docker-compose.override.yml be ignored or committed?",
 "Can I have a second .gitignore inside a subfolder?",
]


def cw_gitignore(rng):
    name = rng.choice([".gitignore", ".gitignore", ".dockerignore", ".prettierignore", ".eslintignore", ".npmignore", ".hgignore"])
    secs = rng.sample(list(GITIGNORE), rng.randint(2, 4))
    body = "\n\n".join(s + "\n" + "\n".join(rng.sample(GITIGNORE[s], rng.randint(1, 4))) for s in secs)
    if rng.random() < 0.3:
        body += "\n\n# but keep the placeholder\n!" + rng.choice(["build/.gitkeep", "logs/.gitkeep", "config/local.example.py", ".env.example"])
    text = f"# {name}\n{body}" if rng.random() < 0.5 else body
    if rng.random() < 0.4:
        text = (rng.choice(["My ", "Here's our ", "Current "]) + f"{name}:\n\n" + text + "\n\n" + rng.choice(IGNORE_Q))
    return text


def cw_java_override(rng):
    cls = rng.choice(["InvoiceController", "MainActivity", "AdminUserDetails", "OrderEvent", "CustomTextView", "SecurityConfig", "LegacyAdapter"])
    v = rng.randrange(4)
    if v == 0:
        code = f'''public class {cls} extends {rng.choice(["BaseController", "AbstractEvent", "Object", "DefaultAdapter"])} {{

    @Override
    public String toString() {{
        return "{cls}{{id=" + id + "}}";
    }}

    @Override
    public boolean equals(Object o) {{
        if (this == o) return true;
        if (!(o instanceof {cls} other)) return false;
        return Objects.equals(id, other.id);
    }}

    @Override
    public int hashCode() {{
        return Objects.hash(id);
    }}
}}'''
    elif v == 1:
        code = f'''@Configuration
@EnableWebSecurity
public class {cls} {{

    @Bean
    SecurityFilterChain filterChain(HttpSecurity http) throws Exception {{
        http
            .authorizeHttpRequests(auth -> auth
                .requestMatchers("/admin/**").hasRole("ADMIN")
                .requestMatchers("/public/**", "/login").permitAll()
                .anyRequest().authenticated())
            .formLogin(Customizer.withDefaults());
        return http.build();
    }}
}}'''
    elif v == 2:
        code = f'''public class {cls} extends AppCompatActivity {{

    @Override
    protected void onCreate(Bundle savedInstanceState) {{
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
    }}

    @Override
    public void onBackPressed() {{
        // override default: ask before leaving the editor
        showDiscardDialog();
    }}
}}'''
    else:
        code = f'''public class {cls} implements UserDetails {{

    @Override
    public Collection<? extends GrantedAuthority> getAuthorities() {{
        return isAdmin ? List.of(new SimpleGrantedAuthority("ROLE_ADMIN")) : List.of();
    }}

    @Override
    public String getPassword() {{
        return passwordHash;
    }}

    @Override
    public boolean isAccountNonLocked() {{
        return !locked;
    }}
}}'''
    q = rng.choice(["", "", "Do I need @Override here or is it just a hint for the compiler?", "Why does the compiler say the method does not override anything?",
                    "Is /admin/** protected correctly in this config?", "Android Studio warns that onBackPressed is deprecated, what's the replacement?"])
    return code + ("\n\n" + q if q else "")


def cw_css(rng):
    sel = rng.choice([".btn-primary", ".navbar .dropdown-menu", "#checkout .price", ".modal-backdrop", "table.admin-users td", ".MuiButton-root", ".prompt-input textarea"])
    prop = rng.sample([("color", "#1a1a1a"), ("background-color", "var(--brand-600)"), ("margin-top", "0"), ("z-index", "1050"), ("font-size", "0.875rem"),
                       ("display", "none"), ("padding", "0.5rem 1rem"), ("border-radius", "4px")], rng.randint(1, 3))
    lines = "\n".join(f"  {p}: {v} !important;{rng.choice(['', ' /* override */', ' /* override bootstrap */', ' /* override vendor default */'])}" for p, v in prop)
    text = f"/* {rng.choice(['Overrides for the third-party theme', 'Admin panel overrides', 'TODO: remove once the design system is updated', 'Ignore the vendor styles here'])} */\n{sel} {{\n{lines}\n}}"
    if rng.random() < 0.5:
        text += "\n\n" + rng.choice(["Is there a way to override this without !important?", "Why is my override ignored on mobile?",
                                     "The vendor stylesheet loads after mine, so these overrides don't apply. How do I fix the order?", "Does specificity beat !important?"])
    return text


CLI_FLAGS = [
 ("--ignore-errors", "Continue when a file cannot be processed."), ("-i, --ignore-case", "Ignore case distinctions in patterns."),
 ("--ignore-missing", "Do not fail on missing input files."), ("--override KEY=VALUE", "Override a configuration value (repeatable)."),
 ("--system", "Use the system-wide configuration file instead of the user one."), ("--no-prompt", "Never prompt for input; fail instead."),
 ("--prompt TEXT", "Text shown before the input cursor (default: '> ')."), ("-p, --password-stdin", "Read the password from standard input."),
 ("--bypass-cache", "Fetch fresh data instead of using the local cache."), ("--disable-telemetry", "Do not send anonymous usage statistics."),
 ("--admin", "Connect with the admin role (requires the admin token)."), ("--root DIR", "Project root (default: current directory)."),
 ("--reveal", "Show secret values in plain text instead of masking them."), ("-f, --force", "Overwrite existing files without asking."),
 ("--sudo", "Run remote commands with sudo."), ("--skip-verify", "Skip TLS certificate verification (not recommended)."),
 ("-y, --yes", "Assume yes to all prompts."), ("--dry-run", "Show what would be done without changing anything."),
 ("--instructions FILE", "Path to the build instructions file (default: BUILD.md)."), ("-q, --quiet", "Only print errors."),
]


def cw_cli_help(rng):
    tool = rng.choice(["syncd", "pkgctl", "vaultcli", "deployer", "lintr", "backupctl", "cfgtool", "mkdocs-lite", "dbmigrate"])
    sub = rng.choice(["", " run", " sync", " apply", " export"])
    flags = rng.sample(CLI_FLAGS, rng.randint(4, 7))
    w = max(len(f) for f, _ in flags) + 2
    text = (f"Usage: {tool}{sub} [OPTIONS] {rng.choice(['<PATH>...', '[FILES]', '<TARGET>', ''])}\n\n{rng.choice(['Synchronise files with the remote store.', 'Apply configuration to the target hosts.', 'Export secrets for local development.', 'Run database migrations.', 'Lint the project.'])}\n\nOptions:\n"
            + "\n".join(f"  {f.ljust(w)}{d}" for f, d in flags) + f"\n  {'-h, --help'.ljust(w)}Print help")
    if rng.random() < 0.35:
        text += "\n\n" + rng.choice([f"What's the difference between --force and --yes in {tool}?", "Is it safe to use --ignore-errors in a cron job?",
                                     "Where does --override get applied, before or after the config file is loaded?", "Why would anyone need --skip-verify?"])
    return text


def cw_git(rng):
    f = rng.choice(["config/local.yml", "appsettings.Development.json", ".env.development", "src/settings_local.py", "web.config"])
    return rng.choice([
        f"I ran `git update-index --assume-unchanged {f}` so my local changes stop showing up. Now I need to pull a change to that file and git refuses. How do I undo it?",
        f"git update-index --skip-worktree {f}\n\nWhat's the difference between this and --assume-unchanged? I just want git to ignore my local edits.",
        f"$ git check-ignore -v {f}\n.gitignore:{rng.randint(3, 40)}:{f.split('/')[-1]}\t{f}\n\nSo it is ignored, but it was committed before. Do I need `git rm --cached`?",
        f"git rm --cached {f}\necho '{f}' >> .gitignore\ngit commit -m \"Stop tracking {f}\"",
        f"Is there a global gitignore? I keep adding .DS_Store to every repo.\n\ngit config --global core.excludesFile ~/.gitignore_global",
        "git config core.ignorecase false\n\nWhy does git on my Mac not notice when I rename a file from Readme.md to README.md?",
        "git commit --no-verify -m \"wip\"\n\nOur pre-commit hook is slow; is bypassing it with --no-verify frowned upon?",
        f"git stash push {f} -m \"local override\"\n\nthen later `git stash pop`. Is there a cleaner way to keep a local override of one file?",
    ])


def cw_ps1(rng):
    return rng.choice([
        "# ~/.bashrc\nexport PS1='\\[\\e[32m\\]\\u@\\h\\[\\e[0m\\]:\\[\\e[34m\\]\\w\\[\\e[0m\\]\\$ '\n\nHow do I make the prompt turn red when I'm root?",
        "if [ \"$EUID\" -eq 0 ]; then\n  PS1='\\[\\e[1;31m\\][root \\W]# \\[\\e[0m\\]'\nelse\n  PS1='[\\u \\W]$ '\nfi",
        "# zsh\nPROMPT='%F{cyan}%n@%m%f %F{yellow}%~%f %# '\nRPROMPT='$(git_prompt_info)'",
        "# fish\nfunction fish_prompt\n    set_color green\n    echo -n (whoami)'@'(prompt_hostname)' '\n    set_color normal\n    echo -n (prompt_pwd)'> '\nend",
        "My shell prompt shows `(base)` before everything since I installed conda. How do I stop it from changing PS1?\n\nconda config --set changeps1 False",
        "PROMPT_COMMAND='history -a'\nPS1='\\t \\w \\$ '\n\nWhy does my prompt show the time when the prompt was drawn, not when the command ran?",
        "# starship.toml\n[character]\nsuccess_symbol = \"[❯](bold green)\"\nerror_symbol = \"[❯](bold red)\"\n\n[username]\nshow_always = false  # only show when root or over ssh",
        "Set-Item -Path function:prompt -Value { \"PS $($executionContext.SessionState.Path.CurrentLocation)$('>' * ($nestedPromptLevel + 1)) \" }\n\nHow do I make this PowerShell prompt permanent?",
    ])


def cw_sudoers(rng):
    u = rng.choice(["deploy", "backup", "ci-runner", "monitoring", "ansible"])
    grp = rng.choice(["admin", "sudo", "wheel", "ops"])
    lines = rng.sample([
        f"{u} ALL=(root) NOPASSWD: /usr/bin/systemctl restart {rng.choice(['nginx', 'myapp', 'postgresql'])}",
        f"%{grp} ALL=(ALL:ALL) ALL",
        "Defaults    env_reset",
        "Defaults    timestamp_timeout=10",
        "Defaults    secure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"",
        f"{u} ALL=(root) NOPASSWD: /usr/local/bin/{u}.sh",
        "root    ALL=(ALL:ALL) ALL",
        "Defaults:%sudo !lecture",
    ], rng.randint(2, 4))
    text = f"# /etc/sudoers.d/{u}\n" + "\n".join(lines)
    q = rng.choice(["", "Always edit with `visudo -f`, a syntax error here can lock you out of sudo.", f"Is it safe to give the {u} user passwordless sudo for just this one command?",
                    "Why does sudo still ask for a password even with NOPASSWD?", "Which file wins if the same user appears in /etc/sudoers and in sudoers.d?"])
    return text + ("\n\n" + q if q else "")


def cw_reveal_pw(rng):
    return rng.choice([
        '''const [reveal, setReveal] = useState(false);

<input type={reveal ? "text" : "password"} name="password" autoComplete="current-password" />
<button type="button" aria-label={reveal ? "Hide password" : "Reveal password"} onClick={() => setReveal(!reveal)}>
  {reveal ? <EyeOffIcon /> : <EyeIcon />}
</button>''',
        '''<label for="pw">Password</label>
<input id="pw" type="password">
<label><input type="checkbox" id="reveal"> Show password</label>
<script>
  document.getElementById("reveal").addEventListener("change", (e) => {
    document.getElementById("pw").type = e.target.checked ? "text" : "password";
  });
</script>''',
        "Our designer wants a 'reveal password' eye icon on the login form. Is that an accessibility or security problem? Edge also shows its own reveal button, so we'd have two.",
        '''/* hide Edge's built-in reveal button so we don't show two eyes */
input[type="password"]::-ms-reveal,
input[type="password"]::-ms-clear {
  display: none;
}''',
        '''TextField(
  obscureText: !_showPassword,
  decoration: InputDecoration(
    labelText: 'Admin password',
    suffixIcon: IconButton(
      icon: Icon(_showPassword ? Icons.visibility_off : Icons.visibility),
      onPressed: () => setState(() => _showPassword = !_showPassword),
    ),
  ),
)''',
        "In the settings page there's a 'Reveal API key' button that shows the full key for 10 seconds. Should we log every time an admin clicks it?",
        '''<PasswordBox x:Name="AdminPassword" PasswordRevealMode="Peek" PlaceholderText="Enter admin password" />''',
    ])


def cw_flags(rng):
    flags = rng.sample([
        ("bypass_cache", "false", "set true only when debugging stale data"), ("disable_rate_limit", "false", "load tests only"),
        ("admin_override_enabled", "false", "lets support staff override plan limits"), ("ignore_ssl_errors", "false", "never true in prod"),
        ("maintenance_mode", "false", ""), ("show_system_banner", "true", "the yellow status banner"), ("new_checkout_flow", "true", "rollout 25%"),
        ("skip_email_verification", "false", "dev/staging only"), ("debug_prompts", "false", "log full LLM prompts, contains PII"),
        ("root_login_allowed", "false", ""), ("legacy_password_hashing", "false", "remove after migration"), ("force_dark_mode", "false", ""),
    ], rng.randint(3, 6))
    fmt = rng.choice(["yaml", "json", "env"])
    if fmt == "yaml":
        text = f"# feature-flags/{rng.choice(['production', 'staging', 'default'])}.yaml\nflags:\n" + "\n".join(
            f"  {k}: {v}" + (f"  # {c}" if c else "") for k, v, c in flags)
    elif fmt == "json":
        text = json.dumps({"flags": {k: v == "true" for k, v, c in flags}}, indent=2)
    else:
        text = "\n".join((f"# {c}\n" if c else "") + f"FEATURE_{k.upper()}={v}" for k, v, c in flags)
    if rng.random() < 0.35:
        text += "\n\n" + rng.choice(["Who is allowed to flip bypass_cache in production?", "Should flags like this live in the repo or in a flag service?",
                                     "How do we make sure disable_rate_limit can never be true in prod?", "We forgot to remove two of these after the launch; is there a lint for stale flags?"])
    return text


LINT_IGNORES = [
 ("python", "import yaml  # type: ignore[import-untyped]"), ("python", "from legacy import *  # noqa: F401,F403"),
 ("python", "# pylint: disable=too-many-arguments,invalid-name"), ("python", "result = eval(expr)  # nosec B307 - input is validated above"),
 ("js", "// eslint-disable-next-line no-console\nconsole.log(\"debug\", payload);"), ("js", "/* eslint-disable react-hooks/exhaustive-deps */"),
 ("ts", "// @ts-ignore -- the types for this package are wrong\nimport legacy from \"legacy-lib\";"), ("ts", "// @ts-expect-error: override is intentional here"),
 ("rust", "#[allow(dead_code)]\nfn unused_helper() {}"), ("rust", "#[allow(clippy::too_many_arguments)]"),
 ("rust", "#[test]\n#[ignore = \"needs a running database\"]\nfn integration_roundtrip() {}"), ("go", "//nolint:errcheck // closing a read-only file\ndefer f.Close()"),
 ("go", "//go:build ignore\n\n// This file is a generator; run it with `go run gen.go`."), ("java", "@SuppressWarnings(\"unchecked\")"),
 ("csharp", "#pragma warning disable CS0618 // Type or member is obsolete"), ("html", "<!-- prettier-ignore -->\n<table><tr><td>a</td><td>b</td></tr></table>"),
 ("shell", "# shellcheck disable=SC2086\nrsync -av $OPTS src/ dest/"), ("sql", "-- noqa: disable=L010"),
]
LINT_Q = ["Is it OK to leave this in, or should I fix the underlying warning?", "Does this disable the rule for the whole file or just one line?",
          "Code review says to avoid blanket ignores. What's the narrowest way to do this?", "How do I run only the ignored tests?", "Why does the linter still complain?", ""]


def cw_lint(rng):
    lang, first = rng.choice(LINT_IGNORES)
    same = [c for l, c in LINT_IGNORES if l == lang and c != first]
    text = first + ("\n\n" + rng.choice(same) if same and rng.random() < 0.5 else "")
    q = rng.choice(LINT_Q)
    return text + ("\n\n" + q if q else "")


def cw_warnings(rng):
    return rng.choice([
        "import warnings\nwarnings.filterwarnings(\"ignore\", category=DeprecationWarning)\n\nIs there a way to ignore these only for one third-party module?",
        f"[pytest]\nfilterwarnings =\n    error\n    ignore::DeprecationWarning:{rng.choice(['botocore', 'pkg_resources', 'distutils', 'google.protobuf'])}.*\n    ignore::UserWarning",
        "python -W ignore::FutureWarning train.py\n\nDoes this also silence warnings from subprocesses?",
        "with warnings.catch_warnings():\n    warnings.simplefilter(\"ignore\")\n    df = pd.read_excel(path)  # openpyxl warns about the default style",
        "np.seterr(divide=\"ignore\", invalid=\"ignore\")\nratio = np.where(b != 0, a / b, 0)",
        "pd.to_numeric(df[\"amount\"], errors=\"coerce\")  # errors=\"ignore\" is deprecated",
        "open(path, encoding=\"utf-8\", errors=\"ignore\").read()\n\nIs errors=\"ignore\" a bad idea here? Some files have a stray Latin-1 byte.",
    ])


def cw_sshd(rng):
    lines = rng.sample(["PermitRootLogin no", "PermitRootLogin prohibit-password", "PasswordAuthentication no", "PubkeyAuthentication yes",
                        "AllowGroups ssh-users admins", "MaxAuthTries 3", "ChallengeResponseAuthentication no", "X11Forwarding no",
                        "ClientAliveInterval 300", "Port 2222", "UsePAM yes"], rng.randint(3, 6))
    text = "# /etc/ssh/sshd_config.d/10-hardening.conf\n" + "\n".join(lines)
    if rng.random() < 0.5:
        text += "\n\n" + rng.choice(["After `systemctl restart sshd` I can still log in as root with a password. Is the file being ignored?",
                                     "Keep a second session open while you change this, otherwise a typo can lock you out.",
                                     "Does a Match block override these settings?"])
    return text


def cw_container(rng):
    return rng.choice([
        "FROM python:3.12-slim\nUSER root\nRUN apt-get update && apt-get install -y --no-install-recommends libpq5 && rm -rf /var/lib/apt/lists/*\nRUN useradd --create-home app\nUSER app\nWORKDIR /home/app",
        "securityContext:\n  runAsNonRoot: true\n  runAsUser: 10001\n  allowPrivilegeEscalation: false\n  readOnlyRootFilesystem: true\n  capabilities:\n    drop: [\"ALL\"]",
        "docker run --rm -it --privileged -v /dev:/dev my-flasher:latest\n\nIs there a way to avoid --privileged just to access a USB device?",
        "# docker-compose.override.yml - local overrides, not committed\nservices:\n  web:\n    environment:\n      - DEBUG=1\n      - ADMIN_PASSWORD=localdev\n    ports:\n      - \"8000:8000\"",
        "kubectl auth can-i --list --as=system:serviceaccount:ci:deployer\n\nWhy does the ci deployer service account have cluster-admin? Looks like a leftover from the initial setup.",
        "[Service]\nUser=root\nExecStart=/usr/local/bin/backup.sh\nProtectSystem=strict\nReadWritePaths=/var/backups\n\nDoes this unit really need to run as root?",
        "podman run --userns=keep-id -v $PWD:/src:Z builder make\n\nWhy does the container write files owned by root without --userns?",
    ])


def cw_sql(rng):
    return rng.choice([
        "ALTER USER app_admin WITH PASSWORD 'change-me-on-first-login';\nREVOKE ALL ON SCHEMA public FROM PUBLIC;\nGRANT USAGE ON SCHEMA public TO app_readonly;",
        "INSERT IGNORE INTO tags (name) VALUES ('billing'), ('urgent');\n\nIs INSERT IGNORE the MySQL equivalent of ON CONFLICT DO NOTHING?",
        "INSERT INTO settings (key, value) VALUES ('theme', 'dark')\nON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;  -- override existing",
        "SELECT usename, usesuper FROM pg_user WHERE usesuper;\n\nWe have three superusers and nobody remembers why. Can I safely drop superuser from the reporting user?",
        "CREATE ROLE readonly NOLOGIN;\nGRANT SELECT ON ALL TABLES IN SCHEMA public TO readonly;\nALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO readonly;",
        "mysql -u root -p -e \"SHOW GRANTS FOR 'backup'@'localhost';\"",
        "UPDATE users SET is_admin = true WHERE email = 'ops@example.com';  -- bootstrap the first admin, run once",
    ])


def cw_windows(rng):
    return rng.choice([
        "Set-ExecutionPolicy -ExecutionPolicy Bypass -Scope Process\n.\\install.ps1\n\nDoes Bypass for the process scope change anything permanently?",
        "runas /user:Administrator \"cmd /k cd C:\\tools\"",
        "Start-Process powershell -Verb RunAs -ArgumentList '-NoProfile -File C:\\scripts\\setup.ps1'",
        "reg add \"HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU\" /v NoAutoUpdate /t REG_DWORD /d 1 /f\n\nOur kiosk machines need updates disabled during opening hours; is a scheduled task better?",
        "net user localadmin * /add\nnet localgroup Administrators localadmin /add\n\nThis prompts for the password interactively, right?",
        "icacls C:\\data /grant \"BUILTIN\\Users:(OI)(CI)RX\" /inheritance:r",
    ])


def cw_infra(rng):
    return rng.choice([
        "resource \"aws_instance\" \"web\" {\n  ami           = var.ami_id\n  instance_type = \"t3.small\"\n\n  lifecycle {\n    ignore_changes  = [tags[\"LastScanned\"], ami]\n    prevent_destroy = true\n  }\n}",
        "location /admin/ {\n    allow 10.0.0.0/8;\n    deny all;\n    auth_basic \"Restricted\";\n    auth_basic_user_file /etc/nginx/.htpasswd;\n}",
        "jobs:\n  test:\n    runs-on: ubuntu-latest\n    continue-on-error: ${{ matrix.experimental }}\n    steps:\n      - uses: actions/checkout@v4\n      - run: npm ci --ignore-scripts\n      - run: npm test",
        "lint:\n  stage: test\n  script: ruff check .\n  allow_failure: true  # ignore until the backlog is cleaned up",
        "curl -k https://staging.internal/health\n\nI know --insecure disables certificate checks. What's the right way to trust our internal CA instead?",
        "pip install --trusted-host pypi.internal --index-url https://pypi.internal/simple --ignore-installed mypkg",
        "rsync -av --ignore-existing --exclude '*.tmp' /mnt/photos/ backup:/srv/photos/",
        "chromium --disable-web-security --user-data-dir=/tmp/chrome-dev\n\nOnly for local CORS testing. Why does it need a separate user-data-dir?",
        ".IGNORE: clean\nclean:\n\t-rm -rf build/ *.o\n\t@echo \"done (errors ignored)\"",
        "ansible-playbook site.yml --become --ask-become-pass --limit webservers\n\nWhat is the difference between --become and running the playbook with sudo?",
    ])


def cw_oop(rng):
    return rng.choice([
        "class Base {\n  greet(): string { return \"hi\"; }\n}\nclass Admin extends Base {\n  override greet(): string { return \"hello, admin\"; }\n}\n\nWhat does the `override` keyword add in TypeScript 4.3+? It compiles without it too.",
        "public class AppDbContext : DbContext\n{\n    protected override void OnModelCreating(ModelBuilder modelBuilder)\n    {\n        base.OnModelCreating(modelBuilder);\n        modelBuilder.Entity<User>().HasIndex(u => u.Email).IsUnique();\n    }\n}",
        "class ReadOnlyAdmin(admin.ModelAdmin):\n    def has_delete_permission(self, request, obj=None):\n        return False  # override: nobody deletes audit rows\n\nadmin.site.register(AuditLog, ReadOnlyAdmin)",
        "class Settings(BaseSettings):\n    admin_email: str\n    debug: bool = False\n\n    model_config = SettingsConfigDict(env_prefix=\"APP_\", env_file=\".env\")\n\n# env vars override values from .env",
        "def __init_subclass__(cls, **kwargs):\n    super().__init_subclass__(**kwargs)\n    if \"run\" not in cls.__dict__:\n        raise TypeError(f\"{cls.__name__} must override run()\")",
        "impl Drop for TempDir {\n    fn drop(&mut self) {\n        // ignore errors: the directory may already be gone\n        let _ = std::fs::remove_dir_all(&self.path);\n    }\n}",
        "if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {\n\treturn err\n} // ignore \"not exist\", the file was already cleaned up",
        "templates/admin/base_site.html\n\n{% extends \"admin/base.html\" %}\n{% block branding %}<h1>Acme admin</h1>{% endblock %}\n\nHow do I override the Django admin title without copying the whole template?",
    ])


def cw_input_prompt(rng):
    return rng.choice([
        "import getpass\n\nuser = input(\"Username: \")\npassword = getpass.getpass(prompt=\"Password (input hidden): \")",
        "read -r -p \"Continue? [y/N] \" answer\nread -r -s -p \"sudo password: \" PW; echo",
        "answers = inquirer.prompt([\n    inquirer.Text(\"name\", message=\"Project name\"),\n    inquirer.Confirm(\"admin\", message=\"Create an admin user?\", default=True),\n])",
        "const name = window.prompt(\"Rename the board:\", board.title);\nif (name !== null) rename(board.id, name);",
        "@click.command()\n@click.option(\"--password\", prompt=True, hide_input=True, confirmation_prompt=True)\ndef create_admin(password):\n    ...",
        "rl.question(\"Enter the admin e-mail: \", (email) => { createAdmin(email); rl.close(); });",
        "Why does `input()` show the prompt after the output when I pipe my script into `tee`? The prompt text appears at the end.",
    ])


def cw_env(rng):
    lines = rng.sample([
        "# .env.example - copy to .env, never commit the real file", "DATABASE_URL=postgres://app:password@localhost:5432/app",
        "ADMIN_EMAIL=admin@example.com", "ADMIN_PASSWORD=  # set on first run", "DISABLE_AUTH=false  # true only for local UI work",
        "SYSTEM_TIMEZONE=Europe/Berlin", "LOG_LEVEL=info", "SECRET_KEY=  # generate with: openssl rand -hex 32", "BYPASS_PAYMENTS_IN_DEV=true",
        "OVERRIDE_SMTP_HOST=mailhog", "ROOT_URL=http://localhost:3000",
    ], rng.randint(4, 7))
    text = "\n".join(lines)
    qs = [q for key, q in [("BYPASS_PAYMENTS", "Is it OK to have BYPASS_PAYMENTS_IN_DEV in the example file, or could someone enable it in prod by mistake?"),
                           ("", "What's the usual way to override these per developer?"),
                           ("ADMIN_PASSWORD", "Our scanner flags ADMIN_PASSWORD here even though it's empty. Can we silence that?"),
                           ("DISABLE_AUTH", "How do we make sure DISABLE_AUTH can never reach production?")] if key in text]
    if rng.random() < 0.4:
        text += "\n\n" + rng.choice(qs)
    return text


CW_MAKERS = [cw_gitignore, cw_gitignore, cw_java_override, cw_css, cw_cli_help, cw_cli_help, cw_git, cw_ps1, cw_sudoers, cw_reveal_pw, cw_flags,
             cw_lint, cw_lint, cw_warnings, cw_sshd, cw_container, cw_sql, cw_windows, cw_infra, cw_infra, cw_oop, cw_input_prompt, cw_env]


def make_code_words(rng):
    return rng.choice(CW_MAKERS)(rng), "en", "user"


# ================================================================ main
def shingles(t):
    return {t[i:i + 8] for i in range(max(1, len(t) - 7))}


def build():
    rng = random.Random(SEED)
    makers = {"code_prompt": make_code_prompt, "api_docs": make_api_docs, "security_writing": make_security_writing,
              "strong_instruction": make_strong_instruction, "doc_imperative": make_doc_imperative, "code_words": make_code_words}
    # share of items in languages other than English, for the kinds that have them
    ml_share = {"security_writing": 0.2, "strong_instruction": 0.2}
    seen, out = set(), []
    for kind, n in TARGET.items():
        n_ml = round(n * ml_share.get(kind, 0))
        got = {True: 0, False: 0}
        kept = []
        need = {True: n_ml, False: n - n_ml}
        tries = 0
        while got[True] + got[False] < n:
            tries += 1
            if tries > 200 * n:
                raise RuntimeError(f"{kind}: only {got} unique items")
            ml = got[True] < need[True] and (got[False] >= need[False] or rng.random() < n_ml / n)
            text, lang, role = makers[kind](rng, True) if ml else makers[kind](rng)
            text = text.strip()
            key = re.sub(r"\s+", " ", text.lower())
            if key in seen:
                continue
            sh = shingles(key)
            if any(len(sh & o) / len(sh | o) >= 0.8 for o in kept):  # too close to one we have
                continue
            seen.add(key)
            kept.append(sh)
            got[ml] += 1
            if ml:
                _ML_USED[(kind, lang)] += 1
            out.append({"text": text, "label": 0, "source": "hard_negative", "kind": kind, "lang": lang, "role": role})
    return out


def main():
    items = build()
    path = os.path.join(here, "hard_negatives.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for x in items:
            f.write(json.dumps(x, ensure_ascii=False) + "\n")
    print(path, len(items), dict(Counter(x["kind"] for x in items)))


if __name__ == "__main__":
    main()
